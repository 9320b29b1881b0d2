"""Benchmark: one folder of N messages (default 100,000) on SQLite (or PostgreSQL).

    python bench/imap_large_folder.py [--messages N] [--database-url URL] [--keep DIR]
                                      [--repeat R]

Fills the folder through the Store API (deliveries grouped by the writer, as SMTP
intake does, without SMTP), then times through imaplib over TLS: SELECT,
UID FETCH 1:* (FLAGS), FETCH 1:1000 (ENVELOPE BODYSTRUCTURE), UID SEARCH FROM "x"
(every message matches: "x" is in example.org). Issue 4 targets for 100,000
messages: 200 ms, 1 s, 500 ms, 1 s. ``--messages 10000`` gives the smaller folder.
``--keep DIR`` keeps the deployment in DIR and reuses it on the next run (no fill);
``--repeat R`` runs the four commands R times on fresh connections.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import imaplib
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailserver.settings import load_settings
from tests.conftest import ServerThread, free_port_base, make_deployment, start_server

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


def fill(server: ServerThread, count: int) -> None:
    record = server.add_mailbox(ADDRESS, PASSWORD)

    async def go() -> None:
        store = server.app.store
        batch = 512
        for start in range(0, count, batch):
            await asyncio.gather(*(
                store.deliver([record.id], message(n))
                for n in range(start, min(start + batch, count))
            ))

    began = time.perf_counter()
    server.call(go(), timeout=3600)
    print(f"filled {count} messages in {time.perf_counter() - began:.1f} s")


def measure(server: ServerThread) -> None:
    context = ssl.create_default_context(cafile=server.settings.path(server.settings.tls.ca))
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the filled deployment here; reuse it when already there")
    parser.add_argument("--repeat", type=int, default=1)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = options.keep or Path(tmp)
        marker = root / "filled"
        reuse = marker.exists() and marker.read_text() == str(options.messages)
        if reuse:
            settings = load_settings(root / "deployment")
            settings = dataclasses.replace(settings, listen=dataclasses.replace(
                settings.listen, port_base=free_port_base()))
        else:
            root.mkdir(parents=True, exist_ok=True)
            settings = make_deployment(root, options.database_url)
        server = start_server(settings)
        try:
            if reuse:
                print(f"reusing the {options.messages} messages kept in {root}")
            else:
                fill(server, options.messages)
                marker.write_text(str(options.messages))
            for _ in range(options.repeat):
                measure(server)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
