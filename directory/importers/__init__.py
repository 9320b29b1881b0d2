"""Importers of the national directory's public files (MSSanté extraction, RPPS)."""

from directory.importers.load import FORMATS, ImportFailed, detect_format, import_file
from directory.importers.report import ImportReport, Problem

__all__ = ["FORMATS", "ImportFailed", "ImportReport", "Problem", "detect_format", "import_file"]
