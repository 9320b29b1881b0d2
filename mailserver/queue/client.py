"""The relay client: one mutually authenticated TLS connection to a peer
operator, reused for several messages.

We present our operator certificate (the server certificate, EKU clientAuth)
and verify the peer's: its chain against the trust anchors, its subject DN
against the destination domain's ``DNCertificatOperateur``. Host names are not
checked: in the trust space an operator is identified by its DN.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
from cryptography import x509

from mailserver.trust.dn import parse_dn, same_dn

QUIT_TIMEOUT = 2.0  # a peer that no longer answers must not hold up a shutdown


class PeerRefused(Exception):
    """The peer cannot be used now; ``reply`` is the SMTP-like reason (4xx/5xx)."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


def client_context(cert: Path, key: Path, anchors_pem: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996
    context.check_hostname = False  # the DN is checked instead (module docstring)
    context.verify_mode = ssl.CERT_REQUIRED
    if anchors_pem:
        context.load_verify_locations(cadata=anchors_pem)
    context.load_cert_chain(cert, key)
    return context


@dataclass(frozen=True)
class Reply:
    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class RelayConnection:
    def __init__(self, host: str, port: int, *, local_hostname: str, context: ssl.SSLContext,
                 expected_dn: str, timeout: float) -> None:
        self.host = host
        self.port = port
        self._smtp = aiosmtplib.SMTP(
            hostname=host, port=port, local_hostname=local_hostname, timeout=timeout,
            start_tls=False, tls_context=context,
        )
        self._context = context
        self._expected = parse_dn(expected_dn)

    async def open(self) -> None:
        try:
            await self._smtp.connect()
            await self._smtp.ehlo()
            if not self._smtp.supports_extension("starttls"):
                raise PeerRefused(f"454 4.7.10 {self.host} offers no STARTTLS")
            await self._smtp.starttls(tls_context=self._context)
            await self._smtp.ehlo()  # RFC 3207 §4.2: extensions are known anew after TLS
        except aiosmtplib.SMTPResponseException as error:
            await self.close()
            raise PeerRefused(f"{error.code} {error.message}") from error
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as error:
            await self.close()
            raise PeerRefused(f"421 4.4.2 cannot reach {self.host}:{self.port}: {error}") from error
        transport = self._smtp.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        if not der:
            await self.close()
            raise PeerRefused(f"421 4.7.5 {self.host} presented no certificate")
        subject = x509.load_der_x509_certificate(der).subject
        if not same_dn(subject, self._expected):
            await self.close()
            raise PeerRefused(
                f"421 4.7.5 certificate of {self.host} is {subject.rfc4514_string()}, "
                f"not the operator DN of the trust list"
            )

    def supports(self, extension: str) -> bool:
        return bool(self._smtp.supports_extension(extension))

    async def mail(self, sender: str, options: list[str]) -> Reply | None:
        """None when accepted, else the refusal."""
        try:
            await self._smtp.mail(sender, options=options, encoding="utf-8")
        except aiosmtplib.SMTPResponseException as error:
            return Reply(error.code, error.message)
        return None

    async def rcpt(self, recipient: str, options: list[str]) -> Reply | None:
        try:
            await self._smtp.rcpt(recipient, options=options, encoding="utf-8")
        except aiosmtplib.SMTPResponseException as error:
            return Reply(error.code, error.message)
        return None

    async def data(self, data: bytes) -> Reply:
        try:
            response = await self._smtp.data(data)
        except aiosmtplib.SMTPResponseException as error:
            return Reply(error.code, error.message)
        return Reply(response.code, response.message)

    async def rset(self) -> None:
        await self._smtp.rset()

    async def alive(self) -> bool:
        """NOOP answered: the peer still holds the connection open."""
        try:
            response = await self._smtp.noop()
        except (aiosmtplib.SMTPException, OSError):
            return False
        return response.code == 250

    @property
    def usable(self) -> bool:
        return self._smtp.is_connected

    async def close(self) -> None:
        try:
            if self._smtp.is_connected:
                await self._smtp.quit(timeout=QUIT_TIMEOUT)
        except (aiosmtplib.SMTPException, OSError):
            self._smtp.close()
