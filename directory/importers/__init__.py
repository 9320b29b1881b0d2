"""Importers of the national directory's public files (MSSanté extraction, RPPS).

The names below are loaded on first use (PEP 562): the parsing process
(parse_process.py) imports this package without the database layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from directory.importers.load import FORMATS, ImportFailed, detect_format, import_file
    from directory.importers.report import ImportReport, Problem

__all__ = ["FORMATS", "ImportFailed", "ImportReport", "Problem", "detect_format", "import_file"]
_WHERE = {"FORMATS": "load", "ImportFailed": "load", "detect_format": "load",
          "import_file": "load", "ImportReport": "report", "Problem": "report"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
