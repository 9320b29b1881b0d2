"""The white list's XML-DSig signature: signed by the authority (here a certificate of a
local PKI), checked by `mss trust import` and by the periodic refresh before a list is
put in force; anything else leaves the previous list in place."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from cli.main import main
from mailserver.pki.local_pki import Issued, LocalPki
from mailserver.settings import Settings
from mailserver.trust.signature import (
    SignaturePolicy,
    load_policy,
    read_whitelist,
    sign_whitelist,
)
from mailserver.trust.whitelist import WhiteListError
from tests.relay_setup import tune, whitelist

DN_A = "CN=mx.sante-a.example,O=A,C=FR"
DN_C = "CN=mx.sante-c.example,O=C,C=FR"
FIRST = whitelist({"sante-a.example": DN_A}).encode()
SECOND = whitelist({"sante-a.example": DN_A, "sante-c.example": DN_C}).encode()


def _pem(certificate: Issued) -> bytes:
    return certificate.certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalPki, Issued,
                                                                   Issued]:
    """The authority's PKI, its list-signing certificate, and someone else's."""
    pki = LocalPki(tmp_path_factory.mktemp("authority") / "pki")
    pki.init("autorite.example", "rsa2048")
    signer = pki.issue("liste@autorite.example", "sign", organisation="autorite.example",
                       key_type="rsa2048")
    other = LocalPki(tmp_path_factory.mktemp("other") / "pki")
    other.init("faussaire.example", "rsa2048")
    forger = other.issue("liste@faussaire.example", "sign", organisation="faussaire.example",
                         key_type="rsa2048")
    return pki, signer, forger


def mss(settings: Settings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), *args])
    return result.exit_code, result.output


def _listed(settings: Settings) -> list[str]:
    code, output = mss(settings, "trust", "list")
    assert code == 0, output
    return [line.split("\t")[0] for line in output.splitlines() if not line.startswith("anchor")]


def _sign_with_cli(settings: Settings, tmp_path: Path, who: Issued, data: bytes,
                   name: str, *extra: str) -> Path:
    source, cert, key, out = (tmp_path / f"{name}.xml", tmp_path / f"{name}.crt",
                              tmp_path / f"{name}.key", tmp_path / f"{name}.signed.xml")
    source.write_bytes(data)
    cert.write_bytes(_pem(who))
    key.write_bytes(who.key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    code, output = mss(settings, "trust", "sign", str(source), "--cert", str(cert),
                       "--key", str(key), "--out", str(out), *extra)
    assert code == 0, output
    return out


def test_signed_list_accepted_tampered_or_forged_or_unsigned_refused(
    deployment: Settings, tmp_path: Path, authority: tuple[LocalPki, Issued,
                                                           Issued],
) -> None:
    _, signer, forger = authority
    (deployment.data_dir / "autorite.pem").write_bytes(_pem(signer))
    settings = tune(deployment, signer='"autorite.pem"')

    first = _sign_with_cli(settings, tmp_path, signer, FIRST, "first")
    assert b"xml-exc-c14n" in first.read_bytes()  # exclusive C14N by default
    code, output = mss(settings, "trust", "import", str(first))
    assert code == 0, output
    assert _listed(settings) == ["sante-a.example"]

    # Tampered after signing: one more domain slipped in.
    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(first.read_bytes().replace(
        b"<Domaine>", SECOND[SECOND.index(b"<Domaine>", SECOND.index(b"</Domaine>")):
                             SECOND.rindex(b"</Domaine>") + len(b"</Domaine>")] + b"<Domaine>",
        1))
    assert b"sante-c.example" in tampered.read_bytes()
    code, output = mss(settings, "trust", "import", str(tampered))
    assert code == 1 and "does not verify" in output and "previous list stays" in output

    # Signed by someone else.
    forged = _sign_with_cli(settings, tmp_path, forger, SECOND, "forged")
    code, output = mss(settings, "trust", "import", str(forged))
    assert code == 1 and "does not verify" in output

    # Not signed at all.
    unsigned = tmp_path / "unsigned.xml"
    unsigned.write_bytes(SECOND)
    code, output = mss(settings, "trust", "import", str(unsigned))
    assert code == 1 and "not signed" in output and "require_signature" in output
    assert _listed(settings) == ["sante-a.example"]  # the first list is still in force

    # Inclusive C14N is accepted as well.
    inclusive = _sign_with_cli(settings, tmp_path, signer, SECOND, "second", "--inclusive")
    assert b"xml-c14n11" in inclusive.read_bytes()
    assert mss(settings, "trust", "import", str(inclusive))[0] == 0
    assert _listed(settings) == ["sante-a.example", "sante-c.example"]

    # The operator may accept unsigned lists (a signed one is still checked).
    settings = tune(settings, require_signature="false")
    assert mss(settings, "trust", "import", str(unsigned))[0] == 0
    assert mss(settings, "trust", "import", str(forged))[0] == 1


def test_signer_chaining_to_a_configured_ca(
    tmp_path: Path, authority: tuple[LocalPki, Issued, Issued],
) -> None:
    """`signer` may hold CA certificates: the certificate carried in the signature must
    chain to them."""
    pki, signer, forger = authority
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                            for c in pki.chain_of("people")))
    policy = load_policy(ca, require=True)
    assert policy.pinned is None
    signed = sign_whitelist(FIRST, signer.certificate, signer.key)
    assert [d.domain for d in read_whitelist(signed, policy).domains] == ["sante-a.example"]
    with pytest.raises(WhiteListError, match="does not verify"):
        read_whitelist(sign_whitelist(FIRST, forger.certificate, forger.key), policy)


def test_only_the_signed_bytes_are_read(
    authority: tuple[LocalPki, Issued, Issued], tmp_path: Path,
) -> None:
    """A second signature, or a signature over part of the document only, is refused."""
    _, signer, _ = authority
    pinned = tmp_path / "signer.pem"
    pinned.write_bytes(_pem(signer))
    policy = load_policy(pinned, require=True)
    signed = sign_whitelist(FIRST, signer.certificate, signer.key)
    start = signed.index(b"<ds:Signature")
    signature = signed[start:signed.index(b"</ds:Signature>") + len(b"</ds:Signature>")]
    doubled = signed.replace(b"</ListeBlanche>", signature + b"</ListeBlanche>")
    with pytest.raises(WhiteListError, match="2 signatures"):
        read_whitelist(doubled, policy)
    # A signature for another document pasted into this one.
    other = sign_whitelist(SECOND, signer.certificate, signer.key)
    other_signature = other[other.index(b"<ds:Signature"):]
    other_signature = other_signature[:other_signature.index(b"</ds:Signature>") + 15]
    pasted = FIRST.replace(b"</ListeBlanche>", other_signature + b"</ListeBlanche>")
    with pytest.raises(WhiteListError, match="does not verify"):
        read_whitelist(pasted, policy)


def test_refresh_keeps_the_previous_list_when_the_signature_fails(
    database_url: str, tmp_path: Path,
    authority: tuple[LocalPki, Issued, Issued],
) -> None:
    from mailserver.store.database import create_engine
    from mailserver.store.migrate import upgrade
    from mailserver.trust.service import TrustSpace, refresh_once

    _, signer, forger = authority
    pinned = tmp_path / "signer.pem"
    pinned.write_bytes(_pem(signer))
    source = tmp_path / "liste.xml"

    def policy() -> SignaturePolicy:
        return load_policy(pinned, require=True)

    async def go() -> None:
        engine = create_engine(database_url)
        await upgrade(engine)
        space = TrustSpace(engine)
        try:
            source.write_bytes(sign_whitelist(FIRST, signer.certificate, signer.key))
            assert await refresh_once(space, str(source), tmp_path, policy)
            source.write_bytes(sign_whitelist(SECOND, forger.certificate, forger.key))
            assert not await refresh_once(space, str(source), tmp_path, policy)
            source.write_bytes(SECOND)
            assert not await refresh_once(space, str(source), tmp_path, policy)
            fresh = TrustSpace(engine)  # no cache: what the database holds
            assert [d.domain for d in await fresh.domains()] == ["sante-a.example"]
        finally:
            await engine.dispose()

    asyncio.run(go())
