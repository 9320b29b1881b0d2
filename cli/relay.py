"""``mss trust``, ``mss route``, ``mss queue``, ``mss dkim``: the trust space,
the transport table, the outbound queue and DKIM keys."""

from __future__ import annotations

import asyncio
import datetime as dt
import tomllib
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import click

from mailserver.dkim import keys as dkim_keys
from mailserver.queue.outbound import OutboundQueue, QueueError
from mailserver.queue.routes import parse_target, with_route, without_route
from mailserver.settings import CONFIG_FILE_NAME, Settings, SettingsError, load_settings
from mailserver.store import Store
from mailserver.store.crypto import CryptoError
from mailserver.store.database import create_engine
from mailserver.store.migrate import upgrade
from mailserver.store.vault import open_vault
from mailserver.trust.anchors import (
    AnchorError,
    add_anchors,
    list_anchors,
    looks_like_bundle,
    parse_bundle,
)
from mailserver.trust.service import TrustSpace, read_source
from mailserver.trust.signature import (
    EXCLUSIVE_C14N,
    policy_for,
    read_whitelist,
    sign_whitelist,
)
from mailserver.trust.whitelist import WhiteListError

T = TypeVar("T")
ERRORS = (QueueError, CryptoError, WhiteListError, AnchorError, dkim_keys.DkimKeyError,
          SettingsError,
          OSError, ValueError)


def _settings() -> Settings:
    context = click.get_current_context()
    data_dir = (context.find_root().obj or {}).get("data_dir")
    if data_dir is None:
        raise click.UsageError("no data directory: give --data-dir DIR or set MSS_DATA_DIR")
    if not (Path(data_dir) / CONFIG_FILE_NAME).exists():
        raise click.ClickException(f"{data_dir} is not a deployment (no mss.toml): mss init")
    try:
        return load_settings(data_dir)
    except SettingsError as error:
        raise click.ClickException(str(error)) from error


def _run(coroutine: Awaitable[T]) -> T:
    try:
        return asyncio.run(coroutine)  # type: ignore[arg-type]
    except ERRORS as error:
        raise click.ClickException(str(error)) from error


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[tuple[TrustSpace, OutboundQueue]]:
    engine = create_engine(settings.database_url,
                           sqlite_synchronous=settings.database.sqlite_synchronous)
    # The vault opens sealed queued messages (`mss queue show`).
    store = Store(engine, vault=open_vault(settings, engine.dialect.name))
    try:
        await upgrade(engine)
        yield TrustSpace(engine), OutboundQueue(store, engine.dialect.name)
    finally:
        await store.close()
        await engine.dispose()


# ---- trust -------------------------------------------------------------------------


@click.group()
def trust() -> None:
    """The operators' trust space: white list and CA certificates."""


@trust.command("import")
@click.argument("source")
def trust_import(source: str) -> None:
    """Import the white list (XML) or a CA bundle (PEM or PKCS#7 .p7b), from FILE or URL.

    A list that fails to parse leaves the previous one in force."""
    settings = _settings()
    anchors_dir = settings.path(settings.trust.anchors_dir)
    try:
        data = read_source(source, anchors_dir)
    except (OSError, ValueError) as error:
        raise click.ClickException(f"cannot read {source}: {error}") from error
    if looks_like_bundle(data):
        try:
            certificates = parse_bundle(data)
        except AnchorError as error:
            raise click.ClickException(f"{source}: {error}") from error
        add_anchors(anchors_dir, certificates)
        for certificate in certificates:
            click.echo(f"Trust anchor {certificate.subject.rfc4514_string()}")
        click.echo(f"{len(certificates)} CA certificate(s) added to {anchors_dir}; "
                   "running servers use them within seconds")
        return
    try:
        whitelist = read_whitelist(data, policy_for(settings))
    except WhiteListError as error:
        raise click.ClickException(f"{source}: {error}; the previous list stays in force") \
            from error

    async def go() -> None:
        async with _database(settings) as (space, _):
            await space.replace(whitelist)

    _run(go())
    click.echo(f"Imported {len(whitelist.domains)} domains (list generated "
               f"{whitelist.generated})")


@trust.command("sign")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--cert", "cert_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM: the signing certificate, then its chain.")
@click.option("--key", "key_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM private key of the certificate (unencrypted).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the signed list (default: standard output).")
@click.option("--inclusive", is_flag=True, help="Inclusive C14N 1.1 instead of exclusive.")
def trust_sign(source: Path, cert_file: Path, key_file: Path, out_file: Path | None,
               inclusive: bool) -> None:
    """Sign a white list (enveloped XML-DSig, RSA-SHA256), as the national authority does:
    for tests and demonstrations with the local PKI."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from signxml.algorithms import CanonicalizationMethod

    try:
        certificates = x509.load_pem_x509_certificates(cert_file.read_bytes())
        key = load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError("the key must be RSA or ECDSA")
        c14n = CanonicalizationMethod.CANONICAL_XML_1_1 if inclusive else EXCLUSIVE_C14N
        signed = sign_whitelist(source.read_bytes(), certificates[0], key, certificates[1:],
                                c14n=c14n)
    except (OSError, ValueError, TypeError) as error:  # WhiteListError is a ValueError
        raise click.ClickException(f"cannot sign {source}: {error}") from error
    if out_file is None:
        click.echo(signed.decode("utf-8"), nl=False)
    else:
        out_file.write_bytes(signed)
        click.echo(f"Signed list written to {out_file}")


@trust.command("list")
def trust_list() -> None:
    """The domains of the trust space with their operator DN, and the trust anchors."""
    settings = _settings()

    async def go() -> None:
        async with _database(settings) as (space, _):
            for domain in await space.domains():
                click.echo(f"{domain.domain}\t{domain.operator_dn}\t{domain.description}")

    _run(go())
    for certificate in list_anchors(settings.path(settings.trust.anchors_dir)):
        click.echo(f"anchor\t{certificate.subject.rfc4514_string()}")


# ---- route -------------------------------------------------------------------------


@click.group()
def route() -> None:
    """The transport table [relay.routes]: DOMAIN → HOST:PORT, used before DNS MX."""


def _config_path() -> Path:
    return _settings().data_dir / CONFIG_FILE_NAME


def _write_config(path: Path, text: str) -> None:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:  # never leave a broken file behind
        raise click.ClickException(f"{path}: edit would break the file ({error})") from error
    temporary = path.with_suffix(".toml.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


@route.command("add")
@click.argument("domain")
@click.argument("target", metavar="HOST:PORT")
def route_add(domain: str, target: str) -> None:
    """Send mail for DOMAIN to HOST:PORT."""
    try:
        parse_target(target)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    path = _config_path()
    _write_config(path, with_route(path.read_text(encoding="utf-8"), domain, target))
    click.echo(f"Route {domain.lower()} -> {target} (restart `mss serve` to apply)")


@route.command("remove")
@click.argument("domain")
def route_remove(domain: str) -> None:
    """Remove DOMAIN's route (DNS MX then applies)."""
    settings = _settings()
    if domain.lower() not in settings.relay.routes:
        raise click.ClickException(f"no route for {domain}")
    path = settings.data_dir / CONFIG_FILE_NAME
    _write_config(path, without_route(path.read_text(encoding="utf-8"), domain))
    click.echo(f"Route of {domain.lower()} removed")


@route.command("list")
def route_list() -> None:
    """Every route of the transport table."""
    for domain, target in sorted(_settings().relay.routes.items()):
        click.echo(f"{domain}\t{target}")


# ---- queue -------------------------------------------------------------------------


@click.group()
def queue() -> None:
    """The outbound queue: one entry per remote recipient."""


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@queue.command("list")
def queue_list() -> None:
    """Entries waiting: ID, queue id, state, attempts, next attempt, sender, recipient."""
    settings = _settings()

    async def go() -> None:
        async with _database(settings) as (_, outbound):
            entries = await outbound.entries()
            for e in entries:
                click.echo(f"{e.id}\t{e.queue_id}\t{e.status}\t{e.attempts}\t"
                           f"{_when(e.next_attempt_at)}\t<{e.mail_from}>\t<{e.recipient}>\t"
                           f"{e.last_reply[:120]}")
            click.echo(f"{len(entries)} entries")

    _run(go())


@queue.command("show")
@click.argument("entry_id", type=int)
def queue_show(entry_id: int) -> None:
    """An entry's details and its message's headers."""
    settings = _settings()

    async def go() -> None:
        async with _database(settings) as (_, outbound):
            e, data = await outbound.entry(entry_id)
        click.echo(f"id: {e.id}\nqueue id: {e.queue_id}\nstatus: {e.status}\n"
                   f"from: <{e.mail_from}>\nto: <{e.recipient}>\nattempts: {e.attempts}\n"
                   f"queued: {_when(e.created_at)}\nnext attempt: {_when(e.next_attempt_at)}\n"
                   f"last reply: {e.last_reply}\nsize: {e.size}\n")
        end = data.find(b"\r\n\r\n")
        click.echo(data[: end if end >= 0 else len(data)].decode("utf-8", "replace"))

    _run(go())


def _queue_action(entry_id: int, action: str, done: str) -> None:
    settings = _settings()

    async def go() -> None:
        async with _database(settings) as (_, outbound):
            await getattr(outbound, action)(entry_id)

    _run(go())
    click.echo(done.format(entry_id))


@queue.command("retry")
@click.argument("entry_id", type=int)
def queue_retry(entry_id: int) -> None:
    """Try an entry now (releases a held one)."""
    _queue_action(entry_id, "retry", "Entry {} will be tried now")


@queue.command("hold")
@click.argument("entry_id", type=int)
def queue_hold(entry_id: int) -> None:
    """Keep an entry without trying it until `mss queue retry`."""
    _queue_action(entry_id, "hold", "Entry {} held")


@queue.command("delete")
@click.argument("entry_id", type=int)
def queue_delete(entry_id: int) -> None:
    """Remove an entry for good, without a DSN."""
    _queue_action(entry_id, "delete", "Entry {} deleted")


# ---- dkim --------------------------------------------------------------------------


@click.group()
def dkim() -> None:
    """DKIM keys of the domains this server signs for."""


@dkim.command("keygen")
@click.argument("domain")
@click.option("--algorithm", type=click.Choice(dkim_keys.ALGORITHMS), default="rsa",
              show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing key.")
def dkim_keygen(domain: str, algorithm: str, force: bool) -> None:
    """Create DOMAIN's key and print the DNS TXT record to publish."""
    settings = _settings()
    keys_dir = settings.path(settings.dkim.keys_dir)
    try:
        path = dkim_keys.key_path(keys_dir, domain)
        if path.exists() and not force:
            raise click.ClickException(f"{path} exists; --force replaces it")
        record = dkim_keys.generate(keys_dir, domain, algorithm)
    except dkim_keys.DkimKeyError as error:
        raise click.ClickException(str(error)) from error
    name = f"{settings.dkim.selector}._domainkey.{domain.lower().rstrip('.')}"
    # RFC 1035 §3.3.14: one TXT string holds at most 255 octets; longer records
    # are split into several strings, which DKIM concatenates (RFC 6376 §3.6.2.2).
    chunks = " ".join(f'"{record[i:i + 255]}"' for i in range(0, len(record), 255))
    click.echo(f"{name}. IN TXT ( {chunks} )")


COMMANDS = (trust, route, queue, dkim)
