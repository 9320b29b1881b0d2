"""``mss demo``: a working deployment on local ports, with people to write as."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from directory.ins import nir_control_key
from directory.models import MailboxType
from directory.service import Directory
from mailserver import supervisor
from mailserver.app import Application
from mailserver.auth import hash_password
from mailserver.deployment import init_deployment
from mailserver.settings import Settings, load_settings
from mailserver.store import Store

DOMAIN = "hopital.example"
PATIENT_DOMAIN = "patient.example"

PROFESSIONALS = (
    ("jean.dupont@hopital.example", MailboxType.PER, "Dr Jean Dupont", "demo-jean-2026"),
    ("cardiologie@hopital.example", MailboxType.ORG, "Service de cardiologie", "demo-cardio-2026"),
    ("labo@hopital.example", MailboxType.APP, "Laboratoire (logiciel)", "demo-labo-2026"),
)
# Synthetic patients: NIR prefixes of nobody, with their computed control key.
PATIENTS = (
    ("2850575112034", "MARTIN", "Claire", "1985-05-12", "demo-claire-2026"),
    ("1720213055123", "BERNARD", "Louis", "1972-02-03", "demo-louis-2026"),
)


def patient_ins(first13: str) -> str:
    return f"{first13}{nir_control_key(first13):02d}"


async def _provision(settings: Settings) -> list[tuple[str, str, str]]:
    app = Application(settings)
    directory: Directory = app.directory
    store: Store = app.store
    accounts: list[tuple[str, str, str]] = []
    try:
        from mailserver.store.migrate import upgrade

        await upgrade(app.engine)
        for address, kind, name, password in PROFESSIONALS:
            record = await directory.lookup(address)
            if record is None:
                record = await directory.add_mailbox(
                    address, kind, password_hash=hash_password(password), display_name=name
                )
            await store.ensure_folders(record.id)
            accounts.append((address, kind.value, password))
        for first13, family, given, birthdate, password in PATIENTS:
            import datetime as dt

            ins = patient_ins(first13)
            address = f"{ins}@{PATIENT_DOMAIN}"
            record = await directory.lookup(address)
            if record is None:
                record = await directory.add_patient(
                    ins=ins, family_name=family, given_names=given,
                    birthdate=dt.date.fromisoformat(birthdate), patient_domain=PATIENT_DOMAIN,
                    password_hash=hash_password(password),
                )
            await store.ensure_folders(record.id)
            accounts.append((address, "PAT", password))
    finally:
        await store.close()
        await app.engine.dispose()
    return accounts


@click.command()
@click.option("--data-dir", "demo_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("var/demo"), show_default=True)
@click.option("--port-base", type=click.IntRange(1, 60000), default=10000, show_default=True)
@click.option("--no-serve", is_flag=True, help="Set up and print, but do not serve.")
def demo(demo_dir: Path, port_base: int, no_serve: bool) -> None:
    """Set up a demo deployment on local ports and serve it."""
    from cli.main import configure_logging

    if not (demo_dir / "mss.toml").exists():
        asyncio.run(init_deployment(demo_dir, domains=[DOMAIN], patient_domain=PATIENT_DOMAIN,
                                    port_base=port_base, hostname="localhost"))
    settings = load_settings(demo_dir)
    accounts = asyncio.run(_provision(settings))
    listen = settings.listen
    click.echo(f"MSS demo in {settings.data_dir}")
    click.echo(f"  host        {listen.bind_address()}")
    click.echo(f"  SMTP relay  {listen.port('smtp')}   (intake for local mailboxes, no AUTH)")
    click.echo(f"  submission  {listen.port('submission')}  (STARTTLS, then AUTH PLAIN/LOGIN)")
    click.echo(f"  submissions {listen.port('submissions')}  (implicit TLS)")
    click.echo(f"  IMAP        {listen.port('imap')} (STARTTLS) / {listen.port('imaps')} (TLS)")
    click.echo(f"  HTTPS       {listen.port('https')}  (directory search API, /fhir/...)")
    click.echo(f"  CA          {settings.path(settings.tls.ca)} (trust it in your client)")
    click.echo("  accounts (login = address):")
    for address, kind, password in accounts:
        click.echo(f"    {kind}  {address:42} {password}")
    click.echo(
        f"  try: swaks --server {listen.bind_address()}:{listen.port('submission')} --tls "
        f"--auth-user {accounts[0][0]} --auth-password {accounts[0][2]} "
        f"--from {accounts[0][0]} --to {accounts[1][0]}"
    )
    if no_serve:
        return
    configure_logging(settings.log.level)
    raise SystemExit(supervisor.serve(settings))
