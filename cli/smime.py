"""``mss smime``: the server's S/MIME from the command line (stdin → stdout, or --in/--out).

Certificates and keys come from the deployment's PKI folder (``mss pki issue``); the
recipients' certificates will come from the directory once it holds them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

import click
from cryptography import x509

from cli.pki import deployment_settings, local_pki
from mailserver.pki.authority import PkiError
from mailserver.pki.local_pki import LocalPki, load_bundle
from mailserver.pki.registry import registrations
from mailserver.settings import Settings
from mailserver.smime import (
    Identity,
    Status,
    authentication_results,
    decrypt_message,
    encrypt_message,
    mime,
    protect,
    sign_message,
    unprotect,
    verify_message,
)
from mailserver.smime.message import MAX_MESSAGE

in_option = click.option("--in", "input_path", type=click.Path(dir_okay=False, path_type=Path),
                         help="Read the message from FILE (default stdin).")
out_option = click.option("--out", "output_path",
                          type=click.Path(dir_okay=False, path_type=Path),
                          help="Write the result to FILE (default stdout).")
cbc_option = click.option("--cbc", is_flag=True,
                          help="EnvelopedData AES-256-CBC for recipients that lack "
                               "AuthEnvelopedData (default: AES-256-GCM).")
recipient_cert_option = click.option(
    "--recipient-cert", "recipient_files", multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A recipient certificate file (PEM/PKCS#7), besides those of --to (repeatable).")


def _read(path: Path | None) -> bytes:
    stream: BinaryIO = path.open("rb") if path else sys.stdin.buffer
    with stream:
        data = stream.read(MAX_MESSAGE + 1)
    if len(data) > MAX_MESSAGE:
        raise click.ClickException(f"the message is larger than {MAX_MESSAGE} bytes")
    return data


def _write(path: Path | None, data: bytes) -> None:
    if path is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        path.write_bytes(data)


def _signer(store: LocalPki, address: str) -> tuple[Identity, list[x509.Certificate]]:
    rows = registrations(store.dir, address, "sign")
    if not rows:
        raise click.ClickException(
            f"no signing certificate for {address}: "
            f"run `mss pki issue {address} --usage sign` first")
    certificate, key = store.load_issued(rows[-1])
    return Identity(certificate, key), store.chain_of(rows[-1].issuer)


def _recipients(store: LocalPki, addresses: tuple[str, ...],
                files: tuple[Path, ...]) -> list[x509.Certificate]:
    found: list[x509.Certificate] = []
    for address in addresses:
        certificates = store.certificates(address, "encrypt")
        if not certificates:
            raise click.ClickException(
                f"no valid encryption certificate for {address}: run `mss pki issue "
                f"{address} --usage encrypt`, or give --recipient-cert FILE")
        found.append(certificates[0])
    for file in files:
        found.extend(load_bundle(file.read_bytes()))
    if not found:
        raise click.ClickException("no recipient: give --to ADDRESS or --recipient-cert FILE")
    return found


def _identities(store: LocalPki, addresses: tuple[str, ...]) -> list[Identity]:
    identities = [i for address in addresses for i in store.identities(address, "encrypt")]
    if not identities:
        raise click.ClickException(
            f"no decryption key for {', '.join(addresses)} in {store.dir}")
    return identities


def _message_addresses(message: bytes, *names: str) -> tuple[str, ...]:
    head, _ = mime.split(mime.canonical(message))
    return tuple(dict.fromkeys(a for name in names for a in mime.addresses(head, name)))


def smime_hard(settings: Settings) -> bool:
    """[pki] smime_crl_failure: without a current CRL, "hard" fails the signature."""
    return settings.pki.smime_crl_failure == "hard"


@click.group()
def smime() -> None:
    """S/MIME sign, encrypt, protect (sign then encrypt), decrypt, verify."""


@smime.command("sign")
@click.option("--from", "sender", help="Signer's address (default: the From field).")
@click.option("--opaque", is_flag=True, help="pkcs7-mime signed-data instead of "
                                             "multipart/signed.")
@in_option
@out_option
@click.pass_context
def smime_sign(context: click.Context, sender: str | None, opaque: bool,
               input_path: Path | None, output_path: Path | None) -> None:
    """Sign a message (multipart/signed, SHA-256)."""
    store = local_pki(deployment_settings(context))
    message = _read(input_path)
    sender = sender or next(iter(_message_addresses(message, "from")), None)
    if sender is None:
        raise click.ClickException("no signer: give --from ADDRESS")
    try:
        identity, chain = _signer(store, sender)
        _write(output_path, sign_message(message, identity, chain, opaque=opaque))
    except (PkiError, ValueError) as error:
        raise click.ClickException(str(error)) from error


@smime.command("encrypt")
@click.option("--to", "recipients", multiple=True, help="Recipient address (repeatable; "
                                                          "default: To and Cc fields).")
@recipient_cert_option
@cbc_option
@in_option
@out_option
@click.pass_context
def smime_encrypt(context: click.Context, recipients: tuple[str, ...],
                  recipient_files: tuple[Path, ...], cbc: bool, input_path: Path | None,
                  output_path: Path | None) -> None:
    """Encrypt a message (AuthEnvelopedData AES-256-GCM by default)."""
    store = local_pki(deployment_settings(context))
    message = _read(input_path)
    if not recipients and not recipient_files:
        recipients = _message_addresses(message, "to", "cc")
    try:
        certificates = _recipients(store, recipients, recipient_files)
        _write(output_path, encrypt_message(message, certificates,
                                            "aes256-cbc" if cbc else "aes256-gcm"))
    except (PkiError, ValueError) as error:
        raise click.ClickException(str(error)) from error


@smime.command("protect")
@click.option("--from", "sender", help="Sender's address (default: the From field).")
@click.option("--to", "recipients", multiple=True,
              help="Recipient address (repeatable; default: To and Cc fields).")
@recipient_cert_option
@cbc_option
@in_option
@out_option
@click.pass_context
def smime_protect(context: click.Context, sender: str | None, recipients: tuple[str, ...],
                  recipient_files: tuple[Path, ...], cbc: bool, input_path: Path | None,
                  output_path: Path | None) -> None:
    """Wrap as message/rfc822, sign, encrypt to the recipients and to the sender."""
    store = local_pki(deployment_settings(context))
    message = _read(input_path)
    sender = sender or next(iter(_message_addresses(message, "from")), None)
    if sender is None:
        raise click.ClickException("no sender: give --from ADDRESS")
    if not recipients and not recipient_files:
        recipients = _message_addresses(message, "to", "cc")
    try:
        identity, chain = _signer(store, sender)
        certificates = _recipients(store, recipients, recipient_files)
        certificates += store.certificates(sender, "encrypt")[:1]  # our own copy
        _write(output_path, protect(message, identity, certificates, chain=chain,
                                    cipher="aes256-cbc" if cbc else "aes256-gcm"))
    except (PkiError, ValueError) as error:
        raise click.ClickException(str(error)) from error


@smime.command("decrypt")
@click.option("--to", "recipients", multiple=True,
              help="Whose key decrypts (repeatable; default: To and Cc fields).")
@in_option
@out_option
@click.pass_context
def smime_decrypt(context: click.Context, recipients: tuple[str, ...], input_path: Path | None,
                  output_path: Path | None) -> None:
    """Decrypt a message; with a signed, wrapped message, verify and unwrap it too."""
    settings = deployment_settings(context)
    store = local_pki(settings)
    message = _read(input_path)
    recipients = recipients or _message_addresses(message, "to", "cc")
    identities = _identities(store, recipients)
    result = unprotect(message, identities, store.trust_store(require_crl=smime_hard(settings)),
                       authserv_id=settings.server.hostname)
    if not result.decrypt.ok:
        # Also plain decryption failures (not S/MIME at all) end here.
        check = decrypt_message(message, identities)
        raise click.ClickException(f"cannot decrypt: {check.reason}")
    _write(output_path, result.message)
    if result.verify.status is not Status.NONE:
        click.echo(f"signature: {result.verify.status.value} ({result.verify.reason})", err=True)


@smime.command("verify")
@click.option("--content", "content_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the verified content (the signed MIME entity) to FILE.")
@in_option
@click.pass_context
def smime_verify(context: click.Context, content_path: Path | None,
                 input_path: Path | None) -> None:
    """Verify a signed message; prints an Authentication-Results field; exit 0 on pass."""
    settings = deployment_settings(context)
    result = verify_message(_read(input_path),
                            local_pki(settings).trust_store(require_crl=smime_hard(settings)))
    click.echo(authentication_results(result, settings.server.hostname).replace("\r\n", "\n"))
    if content_path is not None and result.content is not None and result.ok:
        content_path.write_bytes(result.content)
    if not result.ok:
        sys.exit(1)
