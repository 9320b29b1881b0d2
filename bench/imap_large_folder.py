"""Benchmark: one folder of N messages (default 100,000) on SQLite.

    python bench/imap_large_folder.py [--messages N] [--database-url URL]

Times, through imaplib over TLS: SELECT, UID FETCH 1:* (FLAGS),
FETCH 1:1000 (ENVELOPE BODYSTRUCTURE), UID SEARCH FROM "x".
Issue 4 targets: 200 ms, 1 s, 500 ms, 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import make_deployment, start_server

ADDRESS = "bench@hopital.example"
PASSWORD = "bench-password-1"


def message(n: int) -> bytes:
    sender = "x.sender" if n % 100 == 0 else f"user{n % 50}"
    return (
        f"From: Sender {n} <{sender}@example.org>\r\nTo: <{ADDRESS}>\r\n"
        f"Subject: Message number {n}\r\nDate: Tue, 24 Nov 2026 09:00:00 +0000\r\n"
        f"Message-ID: <{n}@bench>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + "Ligne de texte du message.\r\n" * 20
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--database-url", default="")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(make_deployment(Path(tmp), options.database_url))
        try:
            record = server.add_mailbox(ADDRESS, PASSWORD)

            async def fill() -> None:
                store = server.app.store
                batch = 512
                for start in range(0, options.messages, batch):
                    await asyncio.gather(*(
                        store.deliver([record.id], message(n))
                        for n in range(start, min(start + batch, options.messages))
                    ))

            began = time.perf_counter()
            server.call(fill(), timeout=3600)
            print(f"filled {options.messages} messages in {time.perf_counter() - began:.1f} s")
            context = ssl.create_default_context(
                cafile=server.settings.path(server.settings.tls.ca))
            client = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=context)
            client.login(ADDRESS, PASSWORD)

            def timed(label: str, target: float, action: object) -> None:
                began = time.perf_counter()
                typ, _ = action()  # type: ignore[operator]
                elapsed = time.perf_counter() - began
                verdict = "ok" if elapsed <= target else "SLOW"
                print(f"{label:42s} {elapsed * 1000:8.0f} ms  (target {target * 1000:.0f} ms)"
                      f"  {typ} {verdict}")

            timed("SELECT INBOX", 0.2, lambda: client.select("INBOX"))
            timed("UID FETCH 1:* (FLAGS)", 1.0, lambda: client.uid("FETCH", "1:*", "(FLAGS)"))
            timed("FETCH 1:1000 (ENVELOPE BODYSTRUCTURE)", 0.5,
                  lambda: client.fetch("1:1000", "(ENVELOPE BODYSTRUCTURE)"))
            timed('UID SEARCH FROM "x"', 1.0, lambda: client.uid("SEARCH", "FROM", '"x"'))
            client.logout()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
