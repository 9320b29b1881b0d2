"""Delivery workers: every server process runs one, claiming due recipients
from the shared queue, delivering them domain by domain over one mutually
authenticated connection per destination, and recording the outcome.

4xx (and no answer) is retried on the configured schedule until the message is
too old; 5xx fails at once. Failures and expiries bounce a DSN to the sender
(RFC 3464), delays past the warning age send a "delayed" DSN once. A message
whose handling raises is deferred like a 4xx: it never blocks the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailserver.queue.client import PeerRefused, RelayConnection, Reply
from mailserver.queue.dsn import RecipientReport, build_dsn, wants
from mailserver.queue.outbound import Claimed, OutboundQueue, Result, new_owner
from mailserver.queue.routes import route
from mailserver.settings import RelaySettings
from mailserver.trust.service import TrustSpace

log = logging.getLogger("mailserver.queue")

TLS_CONTEXT_SECONDS = 300.0
IDLE_SECONDS = 30.0  # an idle relay connection is reused within this time, else closed
_PoolKey = tuple[tuple[tuple[str, int], ...], str]

# Deliver a report (DSN) into a local mailbox; False when the address is not local.
ReportSink = Callable[[str, bytes], Awaitable[bool]]


@dataclass
class _Attempt:
    item: Claimed
    reply: str
    remote_mta: str = ""

    @property
    def delivered(self) -> bool:
        return self.reply[:1] == "2"

    @property
    def permanent(self) -> bool:
        return self.reply[:1] == "5"


class DeliveryWorker:
    def __init__(
        self, settings: RelaySettings, queue: OutboundQueue, trust: TrustSpace,
        report: ReportSink, tls_context: Callable[[], ssl.SSLContext], hostname: str,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._trust = trust
        self._report = report
        self._tls_context = tls_context
        self._hostname = hostname
        self._owner = new_owner()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._connections = asyncio.Semaphore(max(1, settings.max_connections))
        self._tls: tuple[float, ssl.SSLContext] | None = None
        self._idle: dict[_PoolKey, list[tuple[float, RelayConnection]]] = {}
        self._schedule = [float(s) for s in settings.retry_schedule]

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="queue-worker")

    def wake(self) -> None:
        """Something was queued here: look now rather than at the next poll."""
        self._wake.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Finish the round in progress (so that its outcomes are recorded)."""
        self._stopping = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def _run(self) -> None:
        try:
            await self._rounds()
        finally:
            await self._close_idle()

    async def _rounds(self) -> None:
        while not self._stopping:
            try:
                worked = await self.run_once()
            except Exception:
                log.exception("queue: delivery round failed")
                worked = False
            if worked or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.poll_seconds)
            self._wake.clear()

    async def run_once(self) -> bool:
        """One round: claim due recipients, deliver, record. False if none was due."""
        if not await self._queue.any_due():
            return False
        claimed = await self._queue.claim(
            self._owner, self._settings.batch, self._settings.lease_seconds
        )
        if not claimed:
            return False
        by_domain: dict[str, list[Claimed]] = {}
        for item in claimed:
            by_domain.setdefault(item.domain, []).append(item)
        renewal = asyncio.create_task(self._renew([c.id for c in claimed]))
        try:
            rounds = await asyncio.gather(
                *(self._domain(domain, items) for domain, items in by_domain.items()),
                return_exceptions=True,
            )
        finally:
            renewal.cancel()
        attempts: list[_Attempt] = []
        for (_, items), outcome in zip(by_domain.items(), rounds, strict=True):
            if isinstance(outcome, BaseException):
                log.error("queue: delivery to %s failed: %r", items[0].domain, outcome)
                attempts += [_Attempt(i, "451 4.3.0 local delivery error") for i in items]
            else:
                attempts += outcome
        await self._queue.record(self._owner, await self._conclude(attempts))
        return True

    async def _renew(self, ids: list[int]) -> None:
        """Keep the lease of this round's rows while it lasts."""
        lease = self._settings.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            try:
                await self._queue.renew(self._owner, ids, lease)
            except Exception:
                log.exception("queue: lease renewal failed")

    # ---- one destination ---------------------------------------------------------

    async def _domain(self, domain: str, items: list[Claimed]) -> list[_Attempt]:
        trusted = await self._trust.lookup(domain)
        if trusted is None:
            return [_Attempt(i, f"450 4.7.1 {domain} is not in the trust space") for i in items]
        destination = await route(domain, self._settings.routes, self._settings.timeout)
        if destination.error:
            code = "550" if destination.permanent else "451"
            return [_Attempt(i, f"{code} {destination.error}") for i in items]
        messages: dict[int, list[Claimed]] = {}
        for item in items:
            messages.setdefault(item.message_pk, []).append(item)
        # Several connections to a busy destination, each reused for its share.
        groups = list(messages.values())
        lanes = max(1, min(self._settings.connections_per_destination, len(groups)))
        shares = [groups[i::lanes] for i in range(lanes)]
        results = await asyncio.gather(
            *(self._lane(destination.hosts, trusted.operator_dn, share) for share in shares)
        )
        return [attempt for lane in results for attempt in lane]

    async def _lane(
        self, hosts: tuple[tuple[str, int], ...], operator_dn: str,
        messages: list[list[Claimed]],
    ) -> list[_Attempt]:
        """Deliver ``messages`` over one connection (an idle one kept from an earlier
        round, else a new one to the first host that works)."""
        async with self._connections:
            key = (hosts, operator_dn)
            connection = await self._idle_connection(key)
            refusal = "451 4.4.1 no host to deliver to"
            for host, port in hosts if connection is None else ():
                candidate = RelayConnection(
                    host, port, local_hostname=self._hostname, context=self._client_tls(),
                    expected_dn=operator_dn, timeout=self._settings.timeout,
                )
                try:
                    await candidate.open()
                except PeerRefused as error:
                    refusal = error.reply
                    log.warning("queue: %s:%d refused: %s", host, port, error.reply)
                    continue
                connection = candidate
                break
            if connection is None:
                # A peer that cannot be reached or authenticated is a temporary failure.
                reply = refusal if refusal[:1] == "4" else "421 4.4.2 " + refusal
                return [_Attempt(i, reply) for group in messages for i in group]
            attempts = []
            healthy = True
            for recipients in messages:
                try:
                    attempts += await self._send(connection, recipients)
                except Exception as error:  # poisoned or connection lost
                    healthy = False
                    log.warning("queue: message %s to %s: %r",
                                recipients[0].queue_id, recipients[0].domain, error)
                    attempts += [_Attempt(r, f"451 4.4.2 {type(error).__name__}: {error}",
                                          connection.host) for r in recipients]
            if healthy and connection.usable and not self._stopping:
                self._idle.setdefault(key, []).append((time.monotonic(), connection))
            else:
                await connection.close()
        return attempts

    async def _idle_connection(self, key: _PoolKey) -> RelayConnection | None:
        """An open connection kept from an earlier round, checked alive (NOOP):
        one TLS handshake serves many rounds."""
        idle = self._idle.get(key, [])
        while idle:
            since, connection = idle.pop()
            if time.monotonic() - since < IDLE_SECONDS and await connection.alive():
                return connection
            await connection.close()
        return None

    async def _close_idle(self) -> None:
        for idle in self._idle.values():
            for _, connection in idle:
                await connection.close()
        self._idle.clear()

    def _client_tls(self) -> ssl.SSLContext:
        """Our client context, rebuilt every few minutes (new trust anchors)."""
        now = time.monotonic()
        if self._tls is None or now - self._tls[0] > TLS_CONTEXT_SECONDS:
            self._tls = (now, self._tls_context())
        return self._tls[1]

    async def _send(
        self, connection: RelayConnection, recipients: list[Claimed]
    ) -> list[_Attempt]:
        first = recipients[0]
        data = first.data if first.data is not None else await self._queue.data(first.message_pk)
        dsn = connection.supports("dsn")
        options = []
        if dsn and first.ret:
            options.append(f"RET={first.ret}")  # RFC 3461 §4.3
        if dsn and first.envid:
            options.append(f"ENVID={first.envid}")  # RFC 3461 §4.4
        if not data.isascii() and connection.supports("8bitmime"):
            options.append("BODY=8BITMIME")  # RFC 6152
        addresses = [first.mail_from, *(r.recipient for r in recipients)]
        host = connection.host
        if not all(a.isascii() for a in addresses):
            if not connection.supports("smtputf8"):  # RFC 6531 §3.2: cannot downgrade
                return [_Attempt(r, "553 5.6.7 the peer does not accept SMTPUTF8 addresses",
                                 host) for r in recipients]
            options.append("SMTPUTF8")
        refused = await connection.mail(first.mail_from, options)
        if refused is not None:
            await connection.rset()
            return [_Attempt(r, str(refused), host) for r in recipients]
        attempts: list[_Attempt] = []
        accepted: list[Claimed] = []
        for item in recipients:
            rcpt_options = []
            if dsn and item.notify:
                rcpt_options.append(f"NOTIFY={item.notify}")  # RFC 3461 §4.1
            if dsn and item.orcpt:
                rcpt_options.append(f"ORCPT={item.orcpt}")  # RFC 3461 §4.2
            refusal = await connection.rcpt(item.recipient, rcpt_options)
            if refusal is None:
                accepted.append(item)
            else:
                attempts.append(_Attempt(item, str(refusal), host))
        if not accepted:
            await connection.rset()
            return attempts
        reply: Reply = await connection.data(data)
        attempts += [_Attempt(item, str(reply), host) for item in accepted]
        log.info("queue: id=%s to %s via %s: %s", first.queue_id,
                 ",".join(i.recipient for i in accepted), host, reply)
        return attempts

    # ---- outcomes -----------------------------------------------------------------

    async def _conclude(self, attempts: list[_Attempt]) -> list[Result]:
        now = time.time()
        max_age = self._settings.max_age_hours * 3600
        warn_age = self._settings.delay_warning_hours * 3600
        results: list[Result] = []
        failed: dict[int, list[_Attempt]] = {}
        delayed: dict[int, list[_Attempt]] = {}
        for attempt in attempts:
            item = attempt.item
            if attempt.delivered:
                results.append(Result(item.id, "delivered", attempt.reply))
                continue
            if not attempt.permanent and now - item.created_at >= max_age:
                attempt = _Attempt(item, "550 5.4.7 Delivery time expired; last reply: "
                                   + attempt.reply, attempt.remote_mta)
            if attempt.permanent:
                log.info("queue: id=%s to %s failed: %s", item.queue_id, item.recipient,
                         attempt.reply)
                results.append(Result(item.id, "failed", attempt.reply))
                if item.mail_from and wants(item.notify, "FAILURE"):
                    failed.setdefault(item.message_pk, []).append(attempt)
                continue
            delay = self._schedule[min(item.attempts, len(self._schedule) - 1)]
            warn = (not item.delay_notified and now - item.created_at >= warn_age
                    and bool(item.mail_from) and wants(item.notify, "DELAY"))
            if warn:
                delayed.setdefault(item.message_pk, []).append(attempt)
            results.append(Result(item.id, "deferred", attempt.reply, now + delay,
                                  item.delay_notified or warn))
        for group, action in ((failed, "failed"), (delayed, "delayed")):
            for pk, group_attempts in group.items():
                await self._bounce(pk, group_attempts, action, max_age)
        return results

    async def _bounce(self, pk: int, attempts: list[_Attempt], action: str,
                      max_age: float) -> None:
        first = attempts[0].item
        try:
            original = await self._queue.data(pk)
            report = build_dsn(
                reporting_mta=self._hostname, sender=first.mail_from,
                reports=[RecipientReport(a.item.recipient, a.item.orcpt, action, a.reply,
                                         a.remote_mta) for a in attempts],
                original=original, ret=first.ret, envid=first.envid,
                arrival=first.created_at,
                will_retry_until=first.created_at + max_age if action == "delayed" else None,
            )
            if not await self._report(first.mail_from, report):
                log.warning("queue: id=%s: sender <%s> is not local, no DSN",
                            first.queue_id, first.mail_from)
        except Exception:
            log.exception("queue: id=%s: DSN to <%s> failed", first.queue_id, first.mail_from)
