"""``mss directory``: import the national files, search, certificates."""

from __future__ import annotations

import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from directory.certificates import (
    MAX_CERTIFICATE_FILE,
    CertificateRecord,
    Certificates,
    load_certificates,
)
from directory.importers import FORMATS, ImportFailed, ImportReport, import_file
from directory.models import CertificateUsage
from directory.search import CANDIDATES, DirectoryEntry, DirectorySearch, SearchResult
from directory.service import Directory, DirectoryError
from mailserver.settings import Settings, SettingsError, load_settings
from mailserver.store.database import create_engine
from mailserver.store.migrate import upgrade

T = TypeVar("T")


def deployment_settings(context: click.Context) -> Settings:
    """The settings of the deployment named by --data-dir, as every `mss` command."""
    data_dir = context.find_root().obj.get("data_dir")
    if data_dir is None:
        raise click.UsageError("no data directory: give --data-dir DIR or set MSS_DATA_DIR")
    if not (Path(data_dir) / "mss.toml").exists():
        raise click.ClickException(f"{data_dir} is not a deployment (no mss.toml): run "
                                   "`mss init` first")
    try:
        return load_settings(data_dir)
    except SettingsError as error:
        raise click.ClickException(str(error)) from error


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    from cli.main import run  # cli.main imports this module: import when called

    return run(coroutine)


@click.group("directory")
def directory_group() -> None:
    """The professional directory: import, search, certificates."""


class ProgressBar:
    """Rows read and rows/s on stderr: redrawn in place on a terminal, a line every
    100,000 rows otherwise (logs)."""

    WIDTH = 30

    def __init__(self, total_bytes: int) -> None:
        self.total = max(total_bytes, 1)
        self.start = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.last_line = 0

    def __call__(self, rows: int, consumed: int) -> None:
        rate = rows / max(time.monotonic() - self.start, 1e-6)
        done = min(consumed / self.total, 1.0)
        if self.tty:
            filled = int(done * self.WIDTH)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            click.echo(f"\r[{bar}] {done:4.0%} {rows:>9,} rows {rate:>9,.0f} rows/s",
                       err=True, nl=False)
        elif rows - self.last_line >= 100_000 or done >= 1.0:
            self.last_line = rows
            click.echo(f"{done:4.0%} {rows:,} rows {rate:,.0f} rows/s", err=True)

    def finish(self) -> None:
        if self.tty:
            click.echo("", err=True)


def print_report(path: Path, report: ImportReport, seconds: float) -> None:
    rate = report.rows / max(seconds, 1e-6)
    click.echo(
        f"Imported {path.name} ({report.format}): {report.rows:,} rows read in {seconds:.1f} s "
        f"({rate:,.0f} rows/s), {report.accepted:,} accepted: {report.added:,} added, "
        f"{report.updated:,} updated, {report.unchanged:,} unchanged, "
        f"{report.retired:,} retired; {report.rejected_count:,} rejected, "
        f"{report.warning_count:,} warnings"
    )
    for note in report.notes:
        click.echo(f"note: {note}")
    for title, problems, count in (("rejected", report.sorted_rejected(),
                                    report.rejected_count),
                                   ("warning", report.warnings, report.warning_count)):
        for problem in problems:
            click.echo(f"{title}: line {problem.line}: {problem.reason}")
        if count > len(problems):
            click.echo(f"{title}: … and {count - len(problems):,} more")


@directory_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "file_format", type=click.Choice(FORMATS),
              help="File format (default: guessed from the header).")
@click.pass_context
def directory_import(context: click.Context, file: Path, file_format: str | None) -> None:
    """Import the MSSanté extraction or the RPPS Personne_activite file."""
    settings = deployment_settings(context)
    bar = ProgressBar(file.stat().st_size)

    async def go() -> ImportReport:
        engine = _open_engine(settings)
        try:
            await upgrade(engine)
            return await import_file(engine, file, file_format=file_format, progress=bar)
        finally:
            await engine.dispose()

    started = time.monotonic()
    try:
        report = _run(go())
    except ImportFailed as error:
        raise click.ClickException(str(error)) from error
    bar.finish()
    print_report(file, report, time.monotonic() - started)




def _open_engine(settings: Settings) -> AsyncEngine:
    return create_engine(settings.database_url,
                         sqlite_synchronous=settings.database.sqlite_synchronous)


def describe(entry: DirectoryEntry) -> str:
    """One line: address, type, name, profession / specialty, organisation, city."""
    what = ""
    if entry.practitioner is not None:
        what = " / ".join(v for v in (entry.practitioner.profession_label,
                                      entry.practitioner.specialty_label) if v)
    where = ""
    if entry.organisation is not None:
        org = entry.organisation
        where = ", ".join(v for v in (org.trade_name or org.name, org.locality) if v)
    return "\t".join((entry.address, entry.type.value, entry.display_name, what, where))


@directory_group.command("search")
@click.argument("query")
@click.option("--limit", type=click.IntRange(1, CANDIDATES), default=20, show_default=True)
@click.pass_context
def directory_search(context: click.Context, query: str, limit: int) -> None:
    """Find professionals: every word starts a name, profession, place… (no accents needed)."""
    settings = deployment_settings(context)

    async def go() -> SearchResult:
        engine = _open_engine(settings)
        try:
            await upgrade(engine)
            return await DirectorySearch(engine).search(query, limit=limit)
        finally:
            await engine.dispose()

    result = _run(go())
    for entry in result.entries:
        click.echo(describe(entry))
    more = "+" if result.truncated else ""
    click.echo(f"{result.total}{more} match(es), {len(result.entries)} shown", err=True)
    if result.truncated:
        click.echo("more matches than shown: add words to narrow the search", err=True)


@directory_group.command("redlist")
@click.argument("address")
@click.option("--off", is_flag=True, help="Publish the mailbox again.")
@click.pass_context
def directory_redlist(context: click.Context, address: str, off: bool) -> None:
    """Hide a mailbox from the public search (red list), or show it again with --off."""
    settings = deployment_settings(context)

    async def go() -> None:
        engine = _open_engine(settings)
        try:
            await upgrade(engine)
            await Directory(engine).set_red_list(address, not off)
        finally:
            await engine.dispose()

    _run(go())
    click.echo(f"{address} {'published again' if off else 'hidden from the public search'}")


@directory_group.group("cert")
def cert_group() -> None:
    """Certificates bound to an address or a domain (S/MIME discovery)."""


USAGES = [usage.value for usage in CertificateUsage]


@cert_group.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--address", help="Bind to this mailbox address.")
@click.option("--domain", help="Bind to this whole domain.")
@click.option("--usage", "usages", type=click.Choice(USAGES), multiple=True, required=True,
              help="What the certificate is for (repeatable).")
@click.pass_context
def cert_add(context: click.Context, file: Path, address: str | None, domain: str | None,
             usages: tuple[str, ...]) -> None:
    """Add a PEM or DER certificate (a PEM file may hold several)."""
    if (address is None) == (domain is None):
        raise click.UsageError("give --address A or --domain D (one of them)")
    settings = deployment_settings(context)
    try:
        certificates = load_certificates(file.read_bytes()[:MAX_CERTIFICATE_FILE + 1])
    except DirectoryError as error:
        raise click.ClickException(f"{file}: {error}") from error

    async def go() -> list[CertificateRecord]:
        engine = _open_engine(settings)
        try:
            await upgrade(engine)
            store = Certificates(engine)
            return [await store.add(certificate, CertificateUsage(usage), address=address,
                                    domain=domain)
                    for certificate in certificates for usage in usages]
        finally:
            await engine.dispose()

    for record in _run(go()):
        click.echo(f"Bound {record.subject} ({record.sha256[:16]}…) to {record.bound_to} "
                   f"for {record.usage.value}, valid {record.not_before:%Y-%m-%d} to "
                   f"{record.not_after:%Y-%m-%d}")


@cert_group.command("list")
@click.argument("name")
@click.pass_context
def cert_list(context: click.Context, name: str) -> None:
    """The certificates bound to an address or a domain."""
    settings = deployment_settings(context)

    async def go() -> list[CertificateRecord]:
        engine = _open_engine(settings)
        try:
            await upgrade(engine)
            return await Certificates(engine).bound_to(name)
        finally:
            await engine.dispose()

    for record in _run(go()):
        click.echo(f"{record.sha256}\t{record.usage.value}\t{record.not_before:%Y-%m-%d}\t"
                   f"{record.not_after:%Y-%m-%d}\t{record.subject}\t{record.issuer}")


@cert_group.command("lookup")
@click.argument("address")
@click.option("--usage", type=click.Choice(USAGES), default="encrypt", show_default=True)
@click.pass_context
def cert_lookup(context: click.Context, address: str, usage: str) -> None:
    """The certificates a sender would use for ADDRESS (address first, else domain)."""
    settings = deployment_settings(context)

    async def go() -> list[CertificateRecord]:
        engine = _open_engine(settings)
        try:
            await upgrade(engine)
            return await Certificates(engine).lookup_certificates(
                address, CertificateUsage(usage))
        finally:
            await engine.dispose()

    records = _run(go())
    if not records:
        raise click.ClickException(f"no valid {usage} certificate for {address} or its domain")
    for record in records:
        click.echo(f"{record.sha256}\t{record.bound_to}\t{record.not_after:%Y-%m-%d}\t"
                   f"{record.subject}")
