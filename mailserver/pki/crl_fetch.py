"""CRLs fetched from the distribution points of certificates (RFC 5280 §4.2.1.13).

``CrlFetcher.crls_for(certificate)`` reads the certificate's cRLDistributionPoints,
fetches each http(s):// or file:// URL (ldap:// and others are skipped), and keeps
what it got until the CRL's nextUpdate (RFC 5280 §5.1.2.5), in memory and in a cache
folder shared by the worker processes. Downloads are bounded in size and time; a
failed fetch is logged and not retried before ``retry_seconds``, so that an
unreachable distribution point costs one timeout per period, not one per login.

The fetcher only parses: the CRL's issuer and signature are checked by the caller
(``smime.trust.TrustStore``) against the certificate's issuer. It blocks: call it
from a worker thread (``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from cryptography import x509

log = logging.getLogger(__name__)

SCHEMES = ("http", "https", "file")
MAX_POINTS = 4  # distribution point URLs tried per certificate (hostile certificates)


class CrlFetchError(Exception):
    """A CRL could not be had from one URL; the message says why."""


def distribution_points(certificate: x509.Certificate) -> list[str]:
    """The certificate's CRL URLs we can fetch, in its order."""
    try:
        points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    except ValueError:  # malformed extension
        return []
    urls: list[str] = []
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier):
                scheme = urllib.parse.urlsplit(name.value).scheme.lower()
                if scheme in SCHEMES and name.value not in urls:
                    urls.append(name.value)
    return urls[:MAX_POINTS]


def parse_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL in DER (RFC 5280 §5) or PEM."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as error:
        raise CrlFetchError(f"not a CRL ({error})") from error


class _NoFileRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects stay on http / https (urllib's default, made explicit)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise CrlFetchError(f"redirect to {newurl[:200]} refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class CrlFetcher:
    def __init__(
        self,
        cache_dir: Path | None,
        *,
        timeout: float = 10.0,
        max_size: int = 10 * 1024 * 1024,
        retry_seconds: float = 300.0,
    ) -> None:
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.max_size = max_size
        self.retry_seconds = retry_seconds
        self._memory: dict[str, tuple[x509.CertificateRevocationList, float]] = {}
        self._failed: dict[str, float] = {}  # url -> monotonic time of the next try
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener(_NoFileRedirects())
        self.fetches = 0  # network / file reads done (for tests and the log)

    # -- the cache ------------------------------------------------------------------------
    def _expiry(self, crl: x509.CertificateRevocationList) -> float:
        """Monotonic deadline: the CRL's nextUpdate, else ``retry_seconds`` from now."""
        next_update = crl.next_update_utc
        if next_update is None:
            return time.monotonic() + self.retry_seconds
        left = (next_update - dt.datetime.now(dt.UTC)).total_seconds()
        if left <= 0:  # published stale: the caller will not use it; ask again later
            return time.monotonic() + self.retry_seconds
        return time.monotonic() + min(left, 366 * 86400.0)

    def _cache_path(self, url: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / (hashlib.sha256(url.encode()).hexdigest() + ".crl")

    def _from_disk(self, url: str) -> x509.CertificateRevocationList | None:
        path = self._cache_path(url)
        if path is None or not path.exists():
            return None
        try:
            crl = parse_crl(path.read_bytes()[: self.max_size + 1])
        except (OSError, CrlFetchError):
            return None
        next_update = crl.next_update_utc
        if next_update is None or next_update <= dt.datetime.now(dt.UTC):
            return None  # stale: fetch again
        return crl

    def _to_disk(self, url: str, data: bytes) -> None:
        path = self._cache_path(url)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            temporary.write_bytes(data)
            os.replace(temporary, path)
        except OSError as error:
            log.warning("crl cache: cannot write %s: %s", path, error)

    # -- fetching -------------------------------------------------------------------------
    def _download(self, url: str) -> bytes:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        try:
            if scheme == "file":
                path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
                with path.open("rb") as handle:
                    data = handle.read(self.max_size + 1)
            elif scheme in ("http", "https"):
                request = urllib.request.Request(  # noqa: S310 — scheme checked above
                    url, headers={"User-Agent": "mss-crl/1"})
                with self._opener.open(request, timeout=self.timeout) as response:
                    data = response.read(self.max_size + 1)
            else:
                raise CrlFetchError(f"scheme {scheme!r} not supported")
        except CrlFetchError:
            raise
        except (OSError, ValueError) as error:  # URLError, HTTPError, timeouts are OSErrors
            raise CrlFetchError(f"cannot fetch: {error}") from error
        if len(data) > self.max_size:
            raise CrlFetchError(f"larger than {self.max_size} bytes")
        return data

    def get(self, url: str) -> x509.CertificateRevocationList | None:
        """The CRL at ``url`` (cached), or None when it cannot be had now."""
        now = time.monotonic()
        with self._lock:
            cached = self._memory.get(url)
            if cached is not None and cached[1] > now:
                return cached[0]
            if self._failed.get(url, 0.0) > now:
                return None
            url_lock = self._locks.setdefault(url, threading.Lock())
        with url_lock:  # one fetch per URL at a time; the others wait for its result
            with self._lock:
                cached = self._memory.get(url)
                if cached is not None and cached[1] > time.monotonic():
                    return cached[0]
            crl = self._from_disk(url)
            if crl is None:
                try:
                    self.fetches += 1
                    data = self._download(url)
                    crl = parse_crl(data)
                except CrlFetchError as error:
                    log.warning("crl %s: %s (next try in %.0fs)", url[:200], error,
                                self.retry_seconds)
                    with self._lock:
                        self._failed[url] = time.monotonic() + self.retry_seconds
                    return None
                self._to_disk(url, data)
                log.info("crl %s fetched: issuer %s, %d revoked, next update %s", url[:200],
                         crl.issuer.rfc4514_string(), len(crl), crl.next_update_utc)
            with self._lock:
                self._memory[url] = (crl, self._expiry(crl))
                self._failed.pop(url, None)
                if len(self._memory) > 1024:
                    self._memory.pop(next(iter(self._memory)))
            return crl

    def crls_for(self, certificate: x509.Certificate) -> list[x509.CertificateRevocationList]:
        """The CRLs named by ``certificate``'s distribution points that could be had."""
        found = []
        for url in distribution_points(certificate):
            crl = self.get(url)
            if crl is not None:
                found.append(crl)
        return found
