"""Login by OpenID Connect token: SASL OAUTHBEARER (RFC 7628) and XOAUTH2 over
SMTP submission and IMAP, against a local issuer's JWKS."""

from __future__ import annotations

import dataclasses
import imaplib
import json
import smtplib
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from directory.models import MailboxType
from tests.conftest import DOMAIN, ServerThread, make_deployment, start_server

RPPS = "810001045367"
DOCTOR = f"jean.dupont@{DOMAIN}"
ISSUER = "https://auth.esante.example/auth/realms/esante-wallet"
AUDIENCE = "mss-hopital"


class Issuer:
    def __init__(self, directory: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
        self.jwks = directory / "oidc" / "jwks.json"
        self.jwks.parent.mkdir()
        self.jwks.write_text(json.dumps({"keys": [jwk]}))

    def token(self, key: Any = None, **overrides: Any) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "f:550dc1c8:" + RPPS,
                  "SubjectNameID": RPPS, "iat": now, "exp": now + 300, **overrides}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def oidc(tmp_path: Path) -> Iterator[tuple[ServerThread, Issuer]]:
    settings = make_deployment(tmp_path)
    issuer = Issuer(settings.data_dir)
    settings = dataclasses.replace(settings, oidc=dataclasses.replace(
        settings.oidc, issuer=ISSUER, audience=AUDIENCE, jwks="oidc/jwks.json"))
    server = start_server(settings)

    async def add() -> None:
        record = await server.app.directory.add_mailbox(
            DOCTOR, MailboxType.PER, password_hash=None, owner=RPPS)
        await server.app.store.ensure_folders(record.id)

    server.call(add())
    try:
        yield server, issuer
    finally:
        server.stop()


def submission(server: ServerThread) -> smtplib.SMTP:
    context = ssl.create_default_context(cafile=server.settings.path(server.settings.tls.ca))
    client = smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10)
    client.starttls(context=context)
    client.ehlo("client.example")
    return client


def xoauth2(user: str, token: str) -> Any:
    return lambda challenge=None: ("\x01" if challenge else
                                   f"user={user}\x01auth=Bearer {token}\x01\x01")


def oauthbearer(user: str, token: str) -> Any:
    return lambda challenge=None: ("\x01" if challenge else
                                   f"n,a={user},\x01auth=Bearer {token}\x01\x01")


def test_smtp_token_login_and_submission(oidc: tuple[ServerThread, Issuer]) -> None:
    server, issuer = oidc
    with submission(server) as client:
        assert "OAUTHBEARER" in client.esmtp_features["auth"]
        assert "XOAUTH2" in client.esmtp_features["auth"]
        code, _ = client.auth("XOAUTH2", xoauth2(DOCTOR, issuer.token()))
        assert code == 235
        assert client.sendmail(DOCTOR, [DOCTOR], b"Subject: self\r\n\r\nnote\r\n") == {}
    with submission(server) as client:
        code, _ = client.auth("OAUTHBEARER", oauthbearer("", issuer.token()))
        assert code == 235  # no address named: the token's practitioner


@pytest.mark.parametrize("case", ["expired", "audience", "issuer", "signature", "claimed",
                                  "unknown", "garbage"])
def test_smtp_refused_tokens(oidc: tuple[ServerThread, Issuer], case: str) -> None:
    server, issuer = oidc
    now = int(time.time())
    token = {
        "expired": lambda: issuer.token(exp=now - 3600, iat=now - 7200),
        "audience": lambda: issuer.token(aud="another-client"),
        "issuer": lambda: issuer.token(iss="https://evil.example"),
        "signature": lambda: issuer.token(
            key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "claimed": lambda: issuer.token(),
        "unknown": lambda: issuer.token(SubjectNameID="899999999999"),
        "garbage": lambda: "not.a.token",
    }[case]()
    user = f"other@{DOMAIN}" if case == "claimed" else DOCTOR
    with submission(server) as client, pytest.raises(smtplib.SMTPAuthenticationError) as error:
        client.auth("OAUTHBEARER", oauthbearer(user, token))
    assert error.value.smtp_code == 535


def test_imap_token_login(oidc: tuple[ServerThread, Issuer]) -> None:
    server, issuer = oidc
    context = ssl.create_default_context(cafile=server.settings.path(server.settings.tls.ca))
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=context) as imap:
        assert "AUTH=OAUTHBEARER" in imap.capabilities
        token = issuer.token()
        typ, _ = imap.authenticate(
            "OAUTHBEARER", lambda _: f"n,a={DOCTOR},\x01auth=Bearer {token}\x01\x01".encode())
        assert typ == "OK"
        assert imap.select("INBOX")[0] == "OK"
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=context) as imap:
        bad = issuer.token(aud="another-client")
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.authenticate(
                "XOAUTH2",
                lambda challenge: (b"\x01" if challenge else
                                   f"user={DOCTOR}\x01auth=Bearer {bad}\x01\x01".encode()))


def test_not_offered_when_not_configured(server: ServerThread) -> None:
    with submission(server) as client:
        assert "OAUTHBEARER" not in client.esmtp_features["auth"]
        code, reply = client.docmd("AUTH", "XOAUTH2 dXNlcj0BAQ==")
        assert (code, reply[:5]) == (504, b"5.5.4")
