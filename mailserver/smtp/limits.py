"""Bounds on simultaneous connections, per client address and in all."""

from __future__ import annotations

from collections import Counter


class ConnectionLimiter:
    def __init__(self, per_ip: int, total: int) -> None:
        self._per_ip = per_ip
        self._total = total
        self._by_ip: Counter[str] = Counter()
        self._count = 0

    def acquire(self, ip: str) -> str | None:
        """Count a new connection; return the reason to refuse it, or None."""
        if self._count >= self._total:
            return "Too many connections to this server"
        if self._by_ip[ip] >= self._per_ip:
            return "Too many connections from your address"
        self._by_ip[ip] += 1
        self._count += 1
        return None

    def release(self, ip: str) -> None:
        self._count -= 1
        self._by_ip[ip] -= 1
        if self._by_ip[ip] <= 0:
            del self._by_ip[ip]

    @property
    def active(self) -> int:
        return self._count
