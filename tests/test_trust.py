"""The trust space's parts on their own: the white list as published, DN
comparison, the `mss trust` / `mss route` / `mss dkim` commands, DKIM signing
and verification, Authentication-Results hygiene."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from cli.main import main
from mailserver.dkim import keys as dkim_keys
from mailserver.dkim.authres import strip_ours
from mailserver.dkim.signer import DkimSigner
from mailserver.queue.routes import with_route, without_route
from mailserver.settings import Settings, load_settings
from mailserver.trust.dn import parse_dn, same_dn
from mailserver.trust.whitelist import WhiteListError, parse_whitelist
from tests.relay_setup import whitelist

DN = "CN=db1.111.example.fr,OU=31598513500187,O=editeur,ST=Paris (75),C=FR"

PLAIN_LIST = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListeBlanche>
  <DateDeGeneration>2026-11-24T08:00:00</DateDeGeneration>
  <Domaine><Nom>Sante-C.example</Nom><Description>C</Description>
    <DNCertificatOperateur>CN=mx.sante-c.example,O=C,C=FR</DNCertificatOperateur>
    <ResponsableContact>r@c</ResponsableContact><SupportContact>s@c</SupportContact>
    <DateMAJ>2026-10-01</DateMAJ></Domaine>
</ListeBlanche>"""


def test_whitelist_in_its_namespace_or_none() -> None:
    published = parse_whitelist(whitelist({"sante-a.example": DN}).encode())
    assert published.generated == "2026-11-24T08:00:00"
    [domain] = published.domains
    assert (domain.domain, domain.operator_dn, domain.support_contact, domain.updated) == (
        "sante-a.example", DN, "support@sante-a.example", "2026-11-01")
    [plain] = parse_whitelist(PLAIN_LIST).domains
    assert plain.domain == "sante-c.example"  # domain names compared in lower case


@pytest.mark.parametrize("broken", [
    b"<ListeBlanche DateDeGeneration='x'><Domaine><Nom>a.example</Nom>",  # truncated
    b"<ListeBlanche><Domaine><Nom>a.example</Nom>"
    b"<DNCertificatOperateur>CN=a</DNCertificatOperateur></Domaine></ListeBlanche>",  # no date
    b"<ListeBlanche DateDeGeneration='x'><Domaine><Nom>a.example</Nom>"
    b"<DNCertificatOperateur>not a DN</DNCertificatOperateur></Domaine></ListeBlanche>",
    b"<ListeBlanche DateDeGeneration='x'></ListeBlanche>",  # empty
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
    b"<ListeBlanche DateDeGeneration='x'>&b;</ListeBlanche>",  # entities refused
])
def test_a_defective_list_is_refused_whole(broken: bytes) -> None:
    with pytest.raises(WhiteListError):
        parse_whitelist(broken)


def test_distinguished_names_compared_parsed() -> None:
    listed = parse_dn(DN)
    assert same_dn(listed, parse_dn(
        "cn=DB1.111.example.fr, ou=31598513500187, o=Editeur, st=Paris  (75), c=fr"))
    assert same_dn(listed, x509.Name.from_rfc4514_string(DN))
    assert not same_dn(listed, parse_dn(DN.replace("editeur", "autre")))
    assert not same_dn(listed, parse_dn(  # same attributes, another order: another name
        "OU=31598513500187,CN=db1.111.example.fr,O=editeur,ST=Paris (75),C=FR"))


def mss(settings: Settings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), *args])
    return result.exit_code, result.output


def test_trust_import_keeps_the_previous_list_on_failure(
    deployment: Settings, tmp_path: Path,
) -> None:
    good, bad = tmp_path / "good.xml", tmp_path / "bad.xml"
    good.write_bytes(PLAIN_LIST)
    bad.write_bytes(PLAIN_LIST.replace(b"</ListeBlanche>", b""))
    assert mss(deployment, "trust", "import", str(good))[0] == 0
    code, output = mss(deployment, "trust", "import", str(bad))
    assert code == 1 and "previous list stays in force" in output
    code, output = mss(deployment, "trust", "list")
    assert code == 0 and "sante-c.example\tCN=mx.sante-c.example,O=C,C=FR" in output
    # A CA bundle is a trust anchor, not a list.
    assert mss(deployment, "trust", "import", str(deployment.path(deployment.tls.ca)))[0] == 0
    assert "anchor\tCN=MSS local CA" in mss(deployment, "trust", "list")[1]
    code, output = mss(deployment, "trust", "import", "http://listeblanche.example/l.xml")
    assert code == 1 and "https://" in output


def test_routes_edit_the_deployment_configuration(deployment: Settings) -> None:
    assert mss(deployment, "route", "add", "Sante-B.example", "127.0.0.1:10025")[0] == 0
    assert mss(deployment, "route", "add", "sante-c.example", "[::1]:2525")[0] == 0
    assert mss(deployment, "route", "add", "sante-b.example", "127.0.0.1:10026")[0] == 0
    assert load_settings(deployment.data_dir).relay.routes == {
        "sante-b.example": "127.0.0.1:10026", "sante-c.example": "::1:2525"}
    assert mss(deployment, "route", "list")[1].splitlines() == [
        "sante-b.example\t127.0.0.1:10026", "sante-c.example\t::1:2525"]
    assert mss(deployment, "route", "remove", "sante-b.example")[0] == 0
    assert load_settings(deployment.data_dir).relay.routes == {"sante-c.example": "::1:2525"}
    code, output = mss(deployment, "route", "add", "x.example", "no-port")
    assert code == 1 and "HOST:PORT" in output
    assert mss(deployment, "route", "remove", "unknown.example")[0] == 1


def test_route_editing_without_a_routes_table() -> None:
    text = with_route("[server]\nhostname = \"a\"\n", "b.example", "h:25")
    assert text.endswith('[relay.routes]\n"b.example" = "h:25"\n')
    assert '"b.example"' not in without_route(text, "B.example")


def _message() -> bytes:
    return (b"From: <a@sante-a.example>\r\nTo: <b@sante-b.example>\r\nSubject: s\r\n"
            b"Message-ID: <1@sante-a.example>\r\n\r\nCorps.\r\n")


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_dkim_keygen_sign_and_verify(deployment: Settings, tmp_path: Path,
                                     algorithm: str) -> None:
    code, output = mss(deployment, "dkim", "keygen", "sante-a.example",
                       "--algorithm", algorithm)
    assert code == 0
    assert output.startswith("mss._domainkey.sante-a.example. IN TXT (")
    assert f"k={algorithm}" in output
    assert mss(deployment, "dkim", "keygen", "sante-a.example")[0] == 1  # no silent overwrite
    keys_dir = deployment.path(deployment.dkim.keys_dir)
    overrides = tmp_path / "dns"
    overrides.mkdir()
    (overrides / "mss._domainkey.sante-a.example").write_text(
        dkim_keys.public_record(keys_dir, "sante-a.example"))
    signer = DkimSigner(keys_dir, "mss", overrides)
    signed = signer.sign(_message(), "sante-a.example")
    assert signed.startswith(b"DKIM-Signature: v=1;")
    assert signer.verify(signed) == "dkim=pass header.d=sante-a.example header.s=mss"
    tampered = signed.replace(b"Corps.", b"Corps modifie.")
    assert signer.verify(tampered).startswith("dkim=fail")
    assert signer.verify(_message()) == "dkim=none"
    assert signer.sign(_message(), "no-key.example") == _message()


def test_only_our_authentication_results_are_stripped() -> None:
    raw = (b"Authentication-Results: MX.Sante-B.example (forged);\r\n\tdkim=pass\r\n"
           b"Authentication-Results: other.example; dkim=fail\r\n"
           b"Subject: s\r\n\r\nAuthentication-Results: mx.sante-b.example; body\r\n")
    stripped = strip_ours(raw, "mx.sante-b.example")
    assert stripped == (b"Authentication-Results: other.example; dkim=fail\r\n"
                        b"Subject: s\r\n\r\nAuthentication-Results: mx.sante-b.example; body\r\n")


def test_refresh_keeps_the_previous_list_when_the_new_one_is_broken(
    database_url: str, tmp_path: Path,
) -> None:
    import asyncio

    from mailserver.store.database import create_engine
    from mailserver.store.migrate import upgrade
    from mailserver.trust.service import TrustSpace, refresh_once

    source = tmp_path / "liste.xml"

    async def go() -> None:
        engine = create_engine(database_url)
        await upgrade(engine)
        space = TrustSpace(engine)
        try:
            source.write_bytes(PLAIN_LIST)
            assert await refresh_once(space, str(source), tmp_path / "anchors")
            assert await space.is_trusted("sante-c.example")
            source.write_bytes(b"<ListeBlanche DateDeGeneration='x'>")  # truncated download
            assert not await refresh_once(space, str(source), tmp_path / "anchors")
            assert not await refresh_once(space, str(tmp_path / "missing.xml"), tmp_path)
            fresh = TrustSpace(engine)  # no cache: what the database holds
            assert [d.domain for d in await fresh.domains()] == ["sante-c.example"]
            assert await fresh.dn_matches(
                "sante-c.example", x509.Name.from_rfc4514_string("CN=mx.sante-c.example,O=C,C=FR"))
        finally:
            await engine.dispose()

    asyncio.run(go())


def test_plain_internet_mx_when_the_operator_chooses_it(tmp_path: Path) -> None:
    """With a trust list, port 25 refuses peers without an operator certificate,
    unless [smtp.inbound] require_trust_space = false: then they reach local
    mailboxes (and still nothing else)."""
    import smtplib

    from tests.conftest import DOMAIN, make_deployment, start_server

    settings = make_deployment(tmp_path)
    listed = tmp_path / "liste.xml"
    listed.write_bytes(PLAIN_LIST)
    assert mss(settings, "trust", "import", str(listed))[0] == 0
    for required, expected in ((True, 530), (False, 250)):
        path = settings.data_dir / "mss.toml"
        path.write_text(path.read_text().replace(
            f"require_trust_space = {str(not required).lower()}",
            f"require_trust_space = {str(required).lower()}"))
        server = start_server(load_settings(settings.data_dir))
        try:
            server.add_mailbox(f"bob@{DOMAIN}") if required else None
            with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as client:
                client.ehlo("mx.internet.example")
                assert client.mail("someone@internet.example")[0] == expected
                if not required:
                    assert client.rcpt(f"bob@{DOMAIN}")[0] == 250
                    assert client.rcpt("x@sante-c.example")[0] == 550  # never relays
        finally:
            server.stop()


def test_ca_bundles_in_pkcs7_der_and_pem(deployment: Settings, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

    ca = x509.load_pem_x509_certificate(deployment.path(deployment.tls.ca).read_bytes())
    for encoding, name in ((Encoding.DER, "bundle.p7b"), (Encoding.PEM, "bundle-pem.p7b")):
        bundle = tmp_path / name
        bundle.write_bytes(pkcs7.serialize_certificates([ca], encoding))
        code, output = mss(deployment, "trust", "import", str(bundle))
        assert code == 0 and "1 CA certificate(s) added" in output, output
    anchors = list(deployment.path(deployment.trust.anchors_dir).glob("*.pem"))
    assert len(anchors) == 1  # the same certificate, stored once
    garbage = tmp_path / "garbage.p7b"
    garbage.write_bytes(b"\x30\x03\x02\x01\x00")
    code, output = mss(deployment, "trust", "import", str(garbage))
    assert code == 1 and "PKCS#7" in output


def test_port_25_learns_anchors_imported_while_it_runs(tmp_path: Path) -> None:
    """`mss trust import CA.pem` reaches a running server's port 25 within seconds."""
    import smtplib
    import ssl
    import time

    from tests.conftest import start_server
    from tests.relay_setup import DOMAIN_A, DOMAIN_B, new_deployment, operator_dn
    from tests.relay_setup import whitelist as render

    a = new_deployment(tmp_path, DOMAIN_A)
    b = new_deployment(tmp_path, DOMAIN_B)
    listed = tmp_path / "liste.xml"
    listed.write_text(render({DOMAIN_A: operator_dn(a)}))
    assert mss(b, "trust", "import", str(listed))[0] == 0
    server = start_server(b)
    try:
        context = ssl.create_default_context(cafile=b.path(b.tls.ca))
        context.check_hostname = False
        context.load_cert_chain(a.path(a.tls.cert), a.path(a.tls.key))

        def mail_from() -> int:
            with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as client:
                client.starttls(context=context)
                client.ehlo("mx.sante-a.example")
                return int(client.mail(f"x@{DOMAIN_A}")[0])

        assert mail_from() == 530  # A's CA unknown here: its certificate is not asked for
        assert mss(b, "trust", "import", str(a.path(a.tls.ca)))[0] == 0
        deadline = time.monotonic() + 15
        while mail_from() != 250:
            assert time.monotonic() < deadline, "anchors not reloaded"
            time.sleep(0.5)
    finally:
        server.stop()
