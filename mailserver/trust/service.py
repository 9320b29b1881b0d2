"""The trust space's API: replace the list atomically, look a domain up.

Each process keeps the list in memory and reloads it from the database at most
every ``CACHE_SECONDS`` (an import by ``mss trust import`` reaches running
servers within that time).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from mailserver.store.database import writer
from mailserver.trust.anchors import anchors_pem
from mailserver.trust.dn import parse_dn, same_dn
from mailserver.trust.models import TrustDomain
from mailserver.trust.signature import SignaturePolicy, read_whitelist
from mailserver.trust.whitelist import MAX_LIST_BYTES, TrustedDomain, WhiteList

log = logging.getLogger("mailserver.trust")

CACHE_SECONDS = 10.0


class TrustSpace:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._domains: dict[str, TrustedDomain] = {}
        self._names: dict[str, x509.Name] = {}
        self._loaded_at = -1e9
        self._lock = asyncio.Lock()

    async def replace(self, whitelist: WhiteList) -> None:
        """Put ``whitelist`` in force, whole, in one transaction."""
        now = dt.datetime.now(dt.UTC)
        rows = [
            {
                "domain": d.domain, "description": d.description, "operator_dn": d.operator_dn,
                "responsible_contact": d.responsible_contact,
                "support_contact": d.support_contact, "updated": d.updated,
                "list_generated": whitelist.generated, "imported_at": now,
            }
            for d in whitelist.domains
        ]
        async with writer(self._engine).begin() as connection:
            await connection.execute(delete(TrustDomain))
            await connection.execute(insert(TrustDomain), rows)
        self._loaded_at = -1e9

    async def _fresh(self) -> dict[str, TrustedDomain]:
        if time.monotonic() - self._loaded_at < CACHE_SECONDS:
            return self._domains
        async with self._lock:
            if time.monotonic() - self._loaded_at < CACHE_SECONDS:
                return self._domains
            async with self._engine.connect() as connection:
                rows = (await connection.execute(select(TrustDomain))).all()
            self._domains = {
                row.domain: TrustedDomain(
                    row.domain, row.description, row.operator_dn, row.responsible_contact,
                    row.support_contact, row.updated,
                )
                for row in rows
            }
            self._names = {d: parse_dn(t.operator_dn) for d, t in self._domains.items()}
            self._loaded_at = time.monotonic()
        return self._domains

    async def domains(self) -> list[TrustedDomain]:
        return sorted((await self._fresh()).values(), key=lambda d: d.domain)

    async def exists(self) -> bool:
        """Is there a trust list at all (port 25 then requires it)?"""
        return bool(await self._fresh())

    async def lookup(self, domain: str) -> TrustedDomain | None:
        return (await self._fresh()).get(domain.lower().rstrip("."))

    async def is_trusted(self, domain: str) -> bool:
        return await self.lookup(domain) is not None

    async def dn_matches(self, domain: str, subject: x509.Name) -> bool:
        """Is ``subject`` the ``DNCertificatOperateur`` of ``domain``?"""
        await self._fresh()
        expected = self._names.get(domain.lower().rstrip("."))
        return expected is not None and same_dn(expected, subject)

    async def any_dn_matches(self, subject: x509.Name) -> bool:
        """Is ``subject`` the certificate DN of some listed operator?"""
        await self._fresh()
        return any(same_dn(name, subject) for name in self._names.values())


def read_source(source: str, anchors_dir: Path, timeout: float = 60) -> bytes:
    """The bytes of a file path or an https:// URL (checked against the anchors,
    else the system's CAs). Blocking: call from a thread."""
    if not source.startswith(("https://", "http://")):
        return Path(source).read_bytes()
    if source.startswith("http://"):
        raise ValueError(f"{source}: the white list must be fetched over https://")
    import ssl

    context = ssl.create_default_context()
    pem = anchors_pem(anchors_dir)
    if pem:
        context.load_verify_locations(cadata=pem)
    with urllib.request.urlopen(source, timeout=timeout, context=context) as response:  # noqa: S310
        data: bytes = response.read(MAX_LIST_BYTES + 1)
    return data


async def refresh_once(trust: TrustSpace, source: str, anchors_dir: Path,
                       policy: Callable[[], SignaturePolicy] = SignaturePolicy) -> bool:
    """Fetch and put in force the list at ``source``; a list that cannot be fetched,
    read or verified (``policy()``, read anew each time: a renewed signer certificate
    is taken up) leaves the previous one in force (and says so in the log)."""
    try:
        data = await asyncio.to_thread(read_source, source, anchors_dir)
        whitelist = read_whitelist(data, policy())
        await trust.replace(whitelist)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        log.warning("trust list refresh from %s failed, previous list kept: %s", source, error)
        return False
    log.info("trust list refreshed from %s: %d domains (generated %s)",
             source, len(whitelist.domains), whitelist.generated)
    return True


async def refresh_forever(
    trust: TrustSpace, url: str, every_minutes: int, anchors_dir: Path,
    policy: Callable[[], SignaturePolicy] = SignaturePolicy,
) -> None:
    """Refresh the list from ``url`` now, then every ``every_minutes``."""
    while True:
        await refresh_once(trust, url, anchors_dir, policy)
        await asyncio.sleep(max(1, every_minutes) * 60)
