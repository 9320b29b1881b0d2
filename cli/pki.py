"""``mss pki``: the deployment's local PKI (IGC-Santé style) and its trust anchors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from cryptography import x509

from directory.certificates import Certificates
from directory.models import CertificateUsage, MailboxType
from directory.service import Directory, DirectoryError
from mailserver.pki.authority import KEY_TYPES, USAGES, PkiError
from mailserver.pki.local_pki import LocalPki, deployment_pki, load_bundle, parse_serial
from mailserver.pki.operator import issue_operator
from mailserver.settings import Settings, SettingsError, load_settings
from mailserver.store.database import create_engine
from mailserver.store.migrate import upgrade


def deployment_settings(context: click.Context) -> Settings:
    """The settings of the deployment named by ``--data-dir`` / ``MSS_DATA_DIR``."""
    root = context.find_root()
    data_dir = (root.obj or {}).get("data_dir")
    if data_dir is None:
        raise click.UsageError("no data directory: give --data-dir DIR or set MSS_DATA_DIR")
    if not (Path(data_dir) / "mss.toml").exists():
        raise click.ClickException(
            f"{data_dir} is not a deployment (no mss.toml): run `mss init` first")
    try:
        return load_settings(data_dir)
    except SettingsError as error:
        raise click.ClickException(str(error)) from error


def local_pki(settings: Settings) -> LocalPki:
    return deployment_pki(settings)


DIRECTORY_USAGE = {"sign": CertificateUsage.SIGN, "encrypt": CertificateUsage.ENCRYPT,
                   "tls-client": CertificateUsage.TLS_CLIENT}
CERTIFICATE_LOGIN_TYPES = (MailboxType.APP, MailboxType.ORG)


async def _check_login_mailbox(settings: Settings, address: str) -> str | None:
    """Refuse a tls-client certificate for a person's mailbox; a warning if the
    mailbox does not exist yet."""
    engine = create_engine(settings.database_url,
                           sqlite_synchronous=settings.database.sqlite_synchronous)
    try:
        await upgrade(engine)
        mailbox = await Directory(engine).lookup(address)
    finally:
        await engine.dispose()
    if mailbox is None:
        return (f"warning: no mailbox {address} in the directory yet; the certificate will "
                "log in once an APP or ORG mailbox of that address exists")
    if mailbox.type not in CERTIFICATE_LOGIN_TYPES:
        raise click.ClickException(
            f"{address} is a {mailbox.type.value} mailbox: TLS client certificates (SASL "
            "EXTERNAL) are for APP and ORG mailboxes; people log in with a password or a token")
    return None


async def register_in_directory(settings: Settings, certificate: x509.Certificate,
                                address: str, usage: str) -> None:
    """Bind an issued certificate to its mailbox in the directory's certificates table."""
    engine = create_engine(settings.database_url,
                           sqlite_synchronous=settings.database.sqlite_synchronous)
    try:
        await upgrade(engine)
        await Certificates(engine).add(certificate, DIRECTORY_USAGE[usage], address=address)
    finally:
        await engine.dispose()


def organisation_of(settings: Settings) -> str:
    return settings.server.domains[0] if settings.server.domains else settings.server.hostname


def read_secret_file(handle: Any, what: str, confirm: bool) -> bytes:
    """A secret from a file (first line) or a prompt; never from the command line."""
    if handle is not None:
        secret = str(handle.readline().rstrip("\r\n"))
    else:
        secret = str(click.prompt(what, hide_input=True, confirmation_prompt=confirm))
    if len(secret) < 8:
        raise click.ClickException(f"the {what.lower()} must have at least 8 characters")
    return secret.encode("utf-8")


@click.group()
def pki() -> None:
    """Local PKI: CAs, certificates, revocation, trust anchors."""


@pki.command("init")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="rsa3072", show_default=True,
              help="Key of the root and sub-CAs.")
@click.pass_context
def pki_init(context: click.Context, key_type: str) -> None:
    """Create the root CA and the servers / people / organisations sub-CAs."""
    settings = deployment_settings(context)
    store = local_pki(settings)
    try:
        authorities = store.init(organisation_of(settings), key_type)
    except PkiError as error:
        raise click.ClickException(str(error)) from error
    for authority in authorities:
        click.echo(f"{authority.name:14} {authority.certificate.subject.rfc4514_string()}")
    click.echo(f"PKI in {store.dir} (root CA is a trust anchor; CRLs in {store.crl_dir})")


@pki.command("issue")
@click.argument("address")
@click.option("--usage", type=click.Choice(USAGES), required=True,
              help="sign / encrypt (S/MIME, people CA), tls-client (organisations CA), "
                   "tls-server (servers CA; ADDRESS is then a host name).")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="rsa2048", show_default=True)
@click.option("--name", "display_name", default="", help="Display name (subject CN).")
@click.option("--id", "identifier", default="",
              help="National professional identifier (RPPS/ADELI), put in the subject.")
@click.option("--days", type=click.IntRange(1, 3650), default=1095, show_default=True)
@click.option("--p12", "p12_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also export key + certificate + chain as PKCS#12 to this file.")
@click.option("--p12-password-file", type=click.File("r"),
              help="File whose first line is the PKCS#12 password (else a prompt).")
@click.pass_context
def pki_issue(context: click.Context, address: str, usage: str, key_type: str,
              display_name: str, identifier: str, days: int, p12_path: Path | None,
              p12_password_file: Any) -> None:
    """Issue a certificate for ADDRESS and register it."""
    from cli.main import run  # cli.main imports this module: import when called

    settings = deployment_settings(context)
    store = local_pki(settings)
    password = (read_secret_file(p12_password_file, "PKCS#12 password", confirm=True)
                if p12_path is not None else None)
    warning = run(_check_login_mailbox(settings, address)) if usage == "tls-client" else None
    try:
        issued = store.issue(address, usage, organisation=organisation_of(settings),
                             key_type=key_type, display_name=display_name,
                             identifier=identifier, days=days)
        if usage in DIRECTORY_USAGE:
            run(register_in_directory(settings, issued.certificate, address, usage))
        if p12_path is not None and password is not None:
            store.export_pkcs12(issued, p12_path, password)
    except (PkiError, DirectoryError) as error:
        raise click.ClickException(str(error)) from error
    if warning:
        click.echo(warning, err=True)
    click.echo(f"Issued {usage} certificate serial {issued.certificate.serial_number:x} "
               f"for {address}")
    click.echo(f"  certificate  {issued.certificate_path}")
    click.echo(f"  key          {issued.key_path}")
    if usage in DIRECTORY_USAGE:
        click.echo(f"  directory    bound to {address} for {usage}")
    if p12_path is not None:
        click.echo(f"  PKCS#12      {p12_path}")


@pki.command("operator")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="rsa2048", show_default=True)
@click.pass_context
def pki_operator(context: click.Context, key_type: str) -> None:
    """Issue the operator's S/MIME certificates (domain-bound, signing and encryption)
    and install them at the [smime] paths of mss.toml (keys 0600)."""
    settings = deployment_settings(context)
    store = local_pki(settings)
    try:
        sign, encrypt = issue_operator(settings, store, organisation_of(settings), key_type)
    except PkiError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"  signing      {sign}")
    click.echo(f"  encryption   {encrypt}")
    click.echo("Peers import the encryption certificate into their directory "
               "(`mss directory certificate add FILE --domain DOMAIN --usage encrypt`) "
               f"and trust {store.ca_dir('root') / 'ca.pem'} (`mss pki trust add`).")


@pki.command("revoke")
@click.argument("serial")
@click.pass_context
def pki_revoke(context: click.Context, serial: str) -> None:
    """Revoke the certificate SERIAL (hex as printed by `issue`) and republish the CRL."""
    store = local_pki(deployment_settings(context))
    try:
        registration = store.revoke(parse_serial(serial))
    except PkiError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Revoked {registration.serial:x} ({registration.address}, {registration.usage});"
               f" CRL {store.crl_dir / (registration.issuer + '.crl')} republished")


@pki.command("crl")
@click.pass_context
def pki_crl(context: click.Context) -> None:
    """Publish a fresh CRL for every CA of the local PKI."""
    store = local_pki(deployment_settings(context))
    try:
        for path in store.publish_crls():
            click.echo(str(path))
    except PkiError as error:
        raise click.ClickException(str(error)) from error


@pki.group("trust")
def pki_trust() -> None:
    """Trust anchors (real CA chains, e.g. the IGC-Santé bundle)."""


@pki_trust.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def pki_trust_add(context: click.Context, file: Path) -> None:
    """Trust the CA certificates of FILE (PEM or PKCS#7 .p7b bundle)."""
    store = local_pki(deployment_settings(context))
    try:
        added = store.add_trust_anchors(load_bundle(file.read_bytes()))
    except PkiError as error:
        raise click.ClickException(str(error)) from error
    for certificate in added:
        click.echo(f"Trusted {certificate.subject.rfc4514_string()}")


@pki_trust.command("list")
@click.pass_context
def pki_trust_list(context: click.Context) -> None:
    """List the trust anchors."""
    store = local_pki(deployment_settings(context))
    for certificate in store.trust_anchors():
        click.echo(f"{certificate.subject.rfc4514_string()}\t"
                   f"until {certificate.not_valid_after_utc:%Y-%m-%d}")
