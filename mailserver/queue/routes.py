"""Where mail for a domain goes: the transport table first (``[relay.routes]``,
like Postfix's transport_maps), else DNS MX (RFC 5321 §5.1)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

SMTP_PORT = 25


@dataclass(frozen=True)
class Route:
    hosts: tuple[tuple[str, int], ...] = ()
    error: str = ""  # why there is no route
    permanent: bool = False  # the domain cannot receive mail (NXDOMAIN, null MX)


def parse_target(target: str) -> tuple[str, int]:
    host, _, port = target.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{target!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


async def route(domain: str, routes: Mapping[str, str], dns_lifetime: float = 10) -> Route:
    domain = domain.lower().rstrip(".")
    if domain in routes:
        return Route((parse_target(routes[domain]),))
    resolver = dns.asyncresolver.Resolver()
    resolver.lifetime = dns_lifetime
    try:
        answer = await resolver.resolve(domain, "MX")
    except dns.resolver.NXDOMAIN:
        return Route(error=f"5.1.2 domain {domain} does not exist", permanent=True)
    except dns.resolver.NoAnswer:
        return Route(((domain, SMTP_PORT),))  # RFC 5321 §5.1: the implicit MX
    except (dns.exception.DNSException, OSError) as error:
        return Route(error=f"4.4.3 DNS look-up of {domain} failed: {error}")
    records = sorted(answer, key=lambda r: r.preference)
    hosts = [str(r.exchange).rstrip(".") for r in records]
    if hosts == [""]:  # RFC 7505 §3: null MX, the domain accepts no mail
        return Route(error=f"5.1.10 {domain} accepts no mail (null MX)", permanent=True)
    return Route(tuple((h, SMTP_PORT) for h in hosts if h))


# ---- editing the transport table in the data dir's mss.toml ------------------------

_ROUTES_HEADER = "[relay.routes]"


def _toml_key(domain: str) -> str:
    return '"' + domain.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _section_bounds(lines: list[str]) -> tuple[int, int] | None:
    """(first line after the header, end) of the [relay.routes] table."""
    for index, line in enumerate(lines):
        if line.strip() == _ROUTES_HEADER:
            end = index + 1
            while end < len(lines) and not lines[end].lstrip().startswith("["):
                end += 1
            return index + 1, end
    return None


def _is_route_line(line: str, domain: str) -> bool:
    key = line.split("=", 1)[0].strip().strip('"').lower() if "=" in line else ""
    return not line.lstrip().startswith("#") and key == domain


def with_route(config: str, domain: str, target: str) -> str:
    """``config`` (mss.toml text) with ``domain`` routed to ``target``; comments kept."""
    domain = domain.lower().rstrip(".")
    host, port = parse_target(target)
    entry = f'{_toml_key(domain)} = "{host}:{port}"'
    lines = without_route(config, domain).splitlines()
    bounds = _section_bounds(lines)
    if bounds is None:
        lines += ["", _ROUTES_HEADER, entry]
    else:
        start, end = bounds
        while end > start and not lines[end - 1].strip():
            end -= 1
        lines.insert(end, entry)
    return "\n".join(lines) + "\n"


def without_route(config: str, domain: str) -> str:
    domain = domain.lower().rstrip(".")
    lines = config.splitlines()
    bounds = _section_bounds(lines)
    if bounds is None:
        return config
    start, end = bounds
    kept = lines[:start] + [
        line for line in lines[start:end] if not _is_route_line(line, domain)
    ] + lines[end:]
    return "\n".join(kept) + "\n"
