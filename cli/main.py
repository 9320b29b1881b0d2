"""``mss``: administer and run a deployment. Errors are one clear line, no traceback."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sys
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from cli.demo import demo
from cli.directory import directory_group
from cli.keys import keys_group
from cli.pki import pki
from cli.send import send
from cli.smime import smime
from cli.util import open_directory, read_password
from directory.ins import InvalidINS
from directory.models import MailboxStatus, MailboxType
from directory.service import DirectoryError
from mailserver import supervisor
from mailserver.auth import hash_password
from mailserver.deployment import DeploymentError, init_deployment
from mailserver.settings import Settings, SettingsError, load_settings

T = TypeVar("T")

USER_ERRORS = (DirectoryError, InvalidINS, SettingsError, DeploymentError, OSError, ValueError)


def run(coroutine: Awaitable[T]) -> T:
    try:
        return asyncio.run(coroutine)  # type: ignore[arg-type]
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from error


def needs_settings(function: Callable[..., Any]) -> Callable[..., Any]:
    @click.pass_context
    @wraps(function)
    def wrapper(context: click.Context, *args: Any, **kwargs: Any) -> Any:
        data_dir = context.obj.get("data_dir")
        if data_dir is None:
            raise click.UsageError("no data directory: give --data-dir DIR or set MSS_DATA_DIR")
        if not (Path(data_dir) / "mss.toml").exists():
            raise click.ClickException(
                f"{data_dir} is not a deployment (no mss.toml): run `mss init --data-dir "
                f"{data_dir} --domain ... --patient-domain ...` first"
            )
        try:
            settings = load_settings(data_dir)
        except SettingsError as error:
            raise click.ClickException(str(error)) from error
        return function(settings, *args, **kwargs)

    return wrapper


@click.group()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              envvar="MSS_DATA_DIR", help="Deployment directory (or MSS_DATA_DIR).")
@click.version_option(package_name="mss-server")
@click.pass_context
def main(context: click.Context, data_dir: Path | None) -> None:
    """Secure health messaging server (MSSanté style)."""
    context.ensure_object(dict)
    context.obj["data_dir"] = data_dir


@main.command()
@click.option("--data-dir", "local_data_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Directory to create the deployment in.")
@click.option("--domain", "domains", multiple=True, required=True,
              help="A professional mail domain (repeatable).")
@click.option("--patient-domain", required=True, help="Domain of patient mailboxes.")
@click.option("--port-base", type=click.IntRange(0, 60000), default=0,
              help="Listen on 127.0.0.1 at N + each standard port.")
@click.option("--hostname", help="Name in the greeting and certificate (default mail.DOMAIN).")
@click.pass_context
def init(context: click.Context, local_data_dir: Path | None, domains: tuple[str, ...],
         patient_domain: str, port_base: int, hostname: str | None) -> None:
    """Create a deployment: mss.toml, database, local CA and TLS certificate."""
    data_dir = local_data_dir or context.obj.get("data_dir")
    if data_dir is None:
        raise click.UsageError("give --data-dir DIR (or MSS_DATA_DIR)")
    settings = run(init_deployment(
        data_dir, domains=list(domains), patient_domain=patient_domain,
        port_base=port_base, hostname=hostname,
    ))
    click.echo(f"Initialised {settings.data_dir}")
    click.echo(f"  configuration  {settings.data_dir / 'mss.toml'}")
    click.echo(f"  TLS            {settings.path(settings.tls.cert)}")
    click.echo(f"  CA             {settings.path(settings.tls.ca)}")
    click.echo(f"Next: mss --data-dir {data_dir} mailbox add ADDRESS --type PER")


@main.group()
def mailbox() -> None:
    """Professional mailboxes (PER, ORG, APP, CAB)."""


@mailbox.command("add")
@click.argument("address")
@click.option("--type", "mailbox_type", required=True,
              type=click.Choice(["PER", "ORG", "APP", "CAB"], case_sensitive=False))
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--password-file", type=click.File("r"), help="File holding the password.")
@click.option("--password", help="The password itself (tests and demos only).")
@needs_settings
def mailbox_add(settings: Settings, address: str, mailbox_type: str, display_name: str,
                password_file: Any, password: str | None) -> None:
    """Create a professional mailbox."""
    domain = address.rpartition("@")[2].lower()
    if domain not in {d.lower() for d in settings.server.domains}:
        raise click.ClickException(
            f"{domain} is not a professional domain of this server "
            f"(server.domains = {', '.join(settings.server.domains) or 'none'})"
        )
    secret = read_password(password_file, password)

    async def go() -> None:
        async with open_directory(settings) as (directory, store):
            record = await directory.add_mailbox(
                address, MailboxType(mailbox_type.upper()),
                password_hash=hash_password(secret), display_name=display_name,
            )
            await store.ensure_folders(record.id)
            click.echo(f"Created {record.type.value} mailbox {record.address}")

    run(go())


@mailbox.command("list")
@needs_settings
def mailbox_list(settings: Settings) -> None:
    """List every mailbox, patients included."""

    async def go() -> None:
        async with open_directory(settings) as (directory, _):
            for record in await directory.list_mailboxes():
                click.echo(f"{record.address}\t{record.type.value}\t{record.status.value}"
                           f"\t{record.display_name}")

    run(go())


@mailbox.command("passwd")
@click.argument("address")
@click.option("--password-file", type=click.File("r"), help="File holding the new password.")
@click.option("--password", help="The new password itself (tests and demos only).")
@needs_settings
def mailbox_passwd(settings: Settings, address: str, password_file: Any,
                   password: str | None) -> None:
    """Set a mailbox's password."""
    secret = read_password(password_file, password)

    async def go() -> None:
        async with open_directory(settings) as (directory, _):
            await directory.set_password_hash(address, hash_password(secret))
            click.echo(f"Password of {address} changed")

    run(go())


@mailbox.command("disable")
@click.argument("address")
@needs_settings
def mailbox_disable(settings: Settings, address: str) -> None:
    """Stop a mailbox from logging in and receiving (its mail is kept)."""

    async def go() -> None:
        async with open_directory(settings) as (directory, _):
            await directory.set_status(address, MailboxStatus.DISABLED)
            click.echo(f"Disabled {address}")

    run(go())


@mailbox.command("enable")
@click.argument("address")
@needs_settings
def mailbox_enable(settings: Settings, address: str) -> None:
    """Let a disabled mailbox log in and receive again."""

    async def go() -> None:
        async with open_directory(settings) as (directory, _):
            await directory.set_status(address, MailboxStatus.ACTIVE)
            click.echo(f"Enabled {address}")

    run(go())


@main.group()
def patient() -> None:
    """Patient mailboxes, <INS>@<patient domain>."""


def _parse_date(_: Any, __: Any, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as error:
        raise click.BadParameter(f"{value!r} is not a date YYYY-MM-DD") from error


@patient.command("add")
@click.option("--ins", required=True, help="INS matricule: 13 characters + 2-digit key.")
@click.option("--family", required=True, help="Family name (nom de naissance).")
@click.option("--given", required=True, help="Given names.")
@click.option("--birthdate", required=True, callback=_parse_date, help="YYYY-MM-DD")
@click.option("--sex", type=click.Choice(["M", "F", "I"]), default=None)
@click.option("--password-file", type=click.File("r"), help="File holding the password.")
@click.option("--password", help="The password itself (tests and demos only).")
@needs_settings
def patient_add(settings: Settings, ins: str, family: str, given: str, birthdate: dt.date,
                sex: str | None, password_file: Any, password: str | None) -> None:
    """Create a patient's mailbox."""
    from directory.ins import validate_ins

    try:
        validate_ins(ins)
    except InvalidINS as error:
        raise click.ClickException(f"invalid INS {ins!r}: {error}") from error
    secret = read_password(password_file, password)

    async def go() -> None:
        async with open_directory(settings) as (directory, store):
            record = await directory.add_patient(
                ins=ins, family_name=family, given_names=given, birthdate=birthdate, sex=sex,
                patient_domain=settings.server.patient_domain,
                password_hash=hash_password(secret),
            )
            await store.ensure_folders(record.id)
            click.echo(f"Created patient mailbox {record.address}")

    run(go())


@main.command()
@needs_settings
def serve(settings: Settings) -> None:
    """Run the server in the foreground until SIGTERM / SIGINT."""
    configure_logging(settings.log.level)
    try:
        status = supervisor.serve(settings)
    except USER_ERRORS as error:
        logging.getLogger("mailserver").error("cannot start: %s", error)
        raise click.ClickException(str(error)) from error
    sys.exit(status)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiosmtpd logs every command line and deprecation chatter; our own session
    # lines are enough. Alembic announces each (no-op) upgrade check.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)


main.add_command(demo)
main.add_command(pki)
main.add_command(keys_group)
main.add_command(smime)
main.add_command(directory_group)
main.add_command(send)

from cli.relay import COMMANDS as RELAY_COMMANDS  # noqa: E402  (trust, route, queue, dkim)

for _command in RELAY_COMMANDS:
    main.add_command(_command)
