"""Authentication shared by SMTP, IMAP and the webmail: passwords and throttling.

Passwords are hashed with Argon2id (RFC 9106, argon2-cffi defaults: t=3, m=64 MiB,
p=4). Hashing runs in a worker thread so that a login never stalls the event loop.
Failed logins are throttled per client address and per account: each recent
failure doubles a delay served before the answer, and after ``max_failures``
within the window, logins are refused outright (SMTP ``454 4.7.0``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from enum import Enum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from directory.models import MailboxType
from directory.service import Directory, DirectoryError, MailboxRecord, normalize_address
from mailserver.client_cert import CertificateRefused, ClientCertificates
from mailserver.oidc import TokenError, TokenVerifier
from mailserver.settings import AuthSettings

log = logging.getLogger(__name__)

_hasher = PasswordHasher()
# A hash of a random password, verified when the account does not exist so that
# the answer takes the same time either way (no account enumeration by timing).
_DUMMY_HASH = _hasher.hash("no such account: constant-time decoy")

# SASL EXTERNAL opens application and organisation mailboxes only: a person (PER)
# logs in personally, by password or by an OpenID Connect token (Pro Santé Connect),
# never by a certificate file that software on a shared machine holds.
CERTIFICATE_MAILBOX_TYPES = frozenset({MailboxType.APP, MailboxType.ORG})


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("a password cannot be empty")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class LoginOutcome(Enum):
    OK = "ok"
    INVALID = "invalid"  # wrong address or password (never say which)
    THROTTLED = "throttled"  # too many recent failures: try later
    NOT_ALLOWED = "not-allowed"  # this kind of mailbox may not use this door


@dataclass(frozen=True)
class LoginResult:
    outcome: LoginOutcome
    mailbox: MailboxRecord | None = None


class FailureThrottle:
    """Recent failed logins per key (client address, account), within a time window."""

    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and failures[0] < now - self._settings.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def count(self, key: str) -> int:
        return len(self._recent(key, time.monotonic()))

    def record_failure(self, key: str) -> None:
        now = time.monotonic()
        failures = self._failures.setdefault(key, deque())
        failures.append(now)
        # Bound memory per key, and the number of keys.
        while len(failures) > self._settings.max_failures * 2:
            failures.popleft()
        if len(self._failures) > 100_000:
            self._failures.pop(next(iter(self._failures)))

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)

    def is_blocked(self, *keys: str) -> bool:
        return any(self.count(key) >= self._settings.max_failures for key in keys)

    def delay(self, *keys: str) -> float:
        """Seconds to wait before answering: doubles with each recent failure."""
        worst = max((self.count(key) for key in keys), default=0)
        if worst == 0:
            return 0.0
        steps = min(worst - 1, 4)  # capped at 16 × the first delay (8 s by default)
        return float(self._settings.failure_delay * 2**steps)


class VerifiedCache:
    """Recently verified passwords, so that practice software opening a connection
    per message does not pay an Argon2 verification each time (as Dovecot's
    auth cache). Entries hold an HMAC of the password under a key that never
    leaves this process, are keyed by the stored hash (a password change or a
    reset misses the cache at once), expire after ``ttl`` seconds, and only
    successes are cached."""

    def __init__(self, ttl: float = 300.0, size: int = 10_000) -> None:
        self._key = secrets.token_bytes(32)
        self._ttl = ttl
        self._size = size
        self._entries: OrderedDict[tuple[str, str], tuple[bytes, float]] = OrderedDict()

    def mac(self, password: str) -> bytes:
        return hmac.digest(self._key, password.encode("utf-8", "surrogatepass"), "sha256")

    def check(self, address: str, stored_hash: str, password: str) -> bool:
        entry = self._entries.get((address, stored_hash))
        if entry is None or entry[1] < time.monotonic():
            return False
        return hmac.compare_digest(entry[0], self.mac(password))

    def remember(self, address: str, stored_hash: str, password: str) -> None:
        self._entries[(address, stored_hash)] = (self.mac(password), time.monotonic() + self._ttl)
        self._entries.move_to_end((address, stored_hash))
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class Authenticator:
    def __init__(self, directory: Directory, settings: AuthSettings,
                 certificates: ClientCertificates | None = None) -> None:
        self._directory = directory
        self._settings = settings
        self.certificates = certificates  # SASL EXTERNAL, when the PKI is set up
        self.throttle = FailureThrottle(settings)
        self.verified = VerifiedCache()
        # Verifications under way, shared by the logins that ask the same question
        # meanwhile: 10,000 IDLE clients reconnecting to a few mailboxes after a
        # restart cost one Argon2 each, not one per connection.
        self._verifying: dict[tuple[str, str, bytes], asyncio.Future[bool]] = {}

    async def login(
        self, address: str, password: str, *, client_ip: str, door: str
    ) -> LoginResult:
        """Check a password login at ``door`` ("smtp", "imap", "web")."""
        account_key = f"account:{address.strip().lower()}"
        ip_key = f"ip:{client_ip}"
        if self.throttle.is_blocked(ip_key, account_key):
            return LoginResult(LoginOutcome.THROTTLED)
        delay = self.throttle.delay(ip_key, account_key)
        if delay:
            await asyncio.sleep(delay)
        mailbox = await self._directory.lookup(address)
        stored_hash = mailbox.password_hash if mailbox and mailbox.can_log_in else None
        if mailbox is not None and stored_hash is not None and self.verified.check(
            mailbox.address, stored_hash, password
        ):
            valid = True
        elif mailbox is not None and stored_hash is not None:
            valid = await self._verify_shared(mailbox.address, stored_hash, password)
        else:
            valid = await asyncio.to_thread(verify_password, _DUMMY_HASH, password)
        if not valid or mailbox is None or stored_hash is None:
            self.throttle.record_failure(ip_key)
            self.throttle.record_failure(account_key)
            return LoginResult(LoginOutcome.INVALID)
        if mailbox.is_patient and not self._patient_allowed(door):
            return LoginResult(LoginOutcome.NOT_ALLOWED, mailbox)
        self.throttle.clear(account_key)
        return LoginResult(LoginOutcome.OK, mailbox)

    async def _verify_shared(self, address: str, stored_hash: str, password: str) -> bool:
        key = (address, stored_hash, self.verified.mac(password))
        pending = self._verifying.get(key)
        if pending is None:
            # A task of its own: a login that gives up does not cancel the others'.
            pending = asyncio.ensure_future(
                asyncio.to_thread(verify_password, stored_hash, password))
            self._verifying[key] = pending
            pending.add_done_callback(lambda _: self._verifying.pop(key, None))
        valid = await asyncio.shield(pending)
        if valid:
            self.verified.remember(address, stored_hash, password)
        return valid

    async def login_token(
        self, verifier: TokenVerifier, token: str, claimed: str, *, client_ip: str, door: str
    ) -> LoginResult:
        """OAUTHBEARER / XOAUTH2: a verified token names a practitioner; their PER
        mailbox logs in (the address the client claims, if any, must be it)."""
        ip_key = f"ip:{client_ip}"
        if self.throttle.is_blocked(ip_key):
            return LoginResult(LoginOutcome.THROTTLED)
        delay = self.throttle.delay(ip_key)
        if delay:
            await asyncio.sleep(delay)
        try:
            verified = await asyncio.to_thread(verifier.verify, token)
        except TokenError as error:
            log.info("token login refused door=%s ip=%s: %s", door, client_ip, error)
            self.throttle.record_failure(ip_key)
            return LoginResult(LoginOutcome.INVALID)
        mailbox = await self._directory.practitioner_mailbox(verified.identifier)
        if mailbox is None or not mailbox.can_receive or (
            claimed and claimed.strip().lower() != mailbox.address
        ):
            log.info("token login refused door=%s ip=%s: no open PER mailbox for %s%s",
                     door, client_ip, verified.identifier,
                     f" named {claimed[:320]}" if claimed else "")
            self.throttle.record_failure(ip_key)
            return LoginResult(LoginOutcome.INVALID)
        return LoginResult(LoginOutcome.OK, mailbox)

    async def login_certificate(
        self, der: bytes | None, authzid: str, *, client_ip: str, door: str
    ) -> LoginResult:
        """SASL EXTERNAL (RFC 4422 Appendix A): the TLS client certificate names the
        mailboxes it is bound to; the authorization identity, if any, picks one of
        them, else there must be exactly one. Refusals are logged with their reason."""
        ip_key = f"ip:{client_ip}"
        if self.throttle.is_blocked(ip_key):
            return LoginResult(LoginOutcome.THROTTLED)

        def refuse(reason: str, subject: str = "-",
                   outcome: LoginOutcome = LoginOutcome.INVALID) -> LoginResult:
            log.info("certificate login refused door=%s ip=%s subject=%s authzid=%s: %s",
                     door, client_ip, subject[:300], authzid[:320] or "-", reason)
            self.throttle.record_failure(ip_key)
            return LoginResult(outcome)

        if self.certificates is None:
            return refuse("certificate logins are not set up (no PKI trust anchors)")
        if der is None:
            return refuse("no client certificate was presented in TLS")
        try:
            identity = await self.certificates.identify(der)
        except CertificateRefused as error:
            return refuse(error.reason, error.subject)
        if authzid:
            try:
                wanted = normalize_address(authzid)
            except DirectoryError:
                return refuse("the authorization identity is not an address", identity.subject)
            if wanted not in identity.addresses:
                return refuse(f"the certificate is not bound to {wanted} (bound to "
                              f"{', '.join(identity.addresses)})", identity.subject)
        elif len(identity.addresses) == 1:
            wanted = identity.addresses[0]
        else:
            return refuse(f"the certificate is bound to {len(identity.addresses)} mailboxes: "
                          "name one as authorization identity", identity.subject)
        mailbox = await self._directory.lookup(wanted)
        if mailbox is None or not mailbox.can_receive:
            return refuse(f"no active mailbox {wanted}", identity.subject)
        if mailbox.type not in CERTIFICATE_MAILBOX_TYPES:
            return refuse(f"{wanted} is a {mailbox.type.value} mailbox: certificate logins are "
                          "for APP and ORG mailboxes", identity.subject, LoginOutcome.NOT_ALLOWED)
        for note in identity.notes:
            log.warning("certificate login door=%s %s: %s", door, wanted, note)
        log.info("certificate login ok door=%s ip=%s mailbox=%s serial=%s", door, client_ip,
                 wanted, identity.serial)
        return LoginResult(LoginOutcome.OK, mailbox)

    def _patient_allowed(self, door: str) -> bool:
        if door == "smtp":
            return self._settings.patients_on_smtp
        if door == "imap":
            return self._settings.patients_on_imap
        return True
