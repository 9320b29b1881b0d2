"""Benchmark: N clients (default 10) running a mix of LOGIN, SELECT, FETCH, STORE,
EXPUNGE and APPEND for D seconds (default 20) over TLS; prints operations/second.

    python bench/imap_ops_mix.py [--clients 10] [--seconds 20] [--database-url URL]

Each client logs in, then runs rounds of SELECT, FETCH, STORE, APPEND, EXPUNGE
and logs in again every 25 rounds (--rounds-per-login). Every IMAP command counts as one operation.
"""

from __future__ import annotations

import argparse
import imaplib
import multiprocessing
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import make_deployment, start_server

PASSWORD = "bench-password-1"


def message(n: int) -> bytes:
    return (f"From: <peer@example.org>\r\nSubject: mix {n}\r\nMessage-ID: <{n}@mix>\r\n\r\n"
            + "corps du message\r\n" * 30).encode()


def run(port: int, cafile: str, user: str, began: float, stop: float,
        rounds: int) -> tuple[int, list[str]]:
    context = ssl.create_default_context(cafile=cafile)
    ops = 0
    n = 0
    errors: list[str] = []
    time.sleep(max(0.0, began - time.time()))
    try:
        while time.time() < stop:
            client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=context)
            client.login(user, PASSWORD)
            ops += 1
            for _ in range(rounds):
                if time.time() >= stop:
                    break
                n += 1
                client.append("INBOX", None, None, message(n))
                client.select("INBOX")
                client.fetch("1:*", "(FLAGS)")
                client.fetch("1:5", "(ENVELOPE BODY.PEEK[HEADER])")
                client.store("1", "+FLAGS", "(\\Seen \\Deleted)")
                client.expunge()
                ops += 6
            client.logout()
            ops += 1
    except Exception as error:  # reported by the caller
        errors.append(repr(error))
    return ops, errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--rounds-per-login", type=int, default=25,
                        help="rounds of SELECT..EXPUNGE between two logins (Argon2 is costly)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(make_deployment(Path(tmp), options.database_url))
        try:
            ssl.create_default_context(
                cafile=server.settings.path(server.settings.tls.ca))
            users = [f"mix{n}@hopital.example" for n in range(options.clients)]
            for user in users:
                server.add_mailbox(user, PASSWORD)
            port = server.port("imaps")
            cafile = str(server.settings.path(server.settings.tls.ca))
            stop = time.time() + 3 + options.seconds
            began = time.time() + 3
            # Clients run in their own processes: the server keeps this one's GIL.
            with multiprocessing.Pool(options.clients) as pool:
                jobs = [(port, cafile, user, began, stop, options.rounds_per_login)
                        for user in users]
                pending = pool.starmap_async(run, jobs)
                time.sleep(max(0.0, began - time.time()))
                cpu = time.process_time()  # this process is the server's
                results = pending.get()
                cpu = time.process_time() - cpu
            elapsed = options.seconds
            total = sum(r[0] for r in results)
            errors = [e for r in results for e in r[1]]
            print(f"{options.clients} clients, {elapsed:.1f} s: {total} operations, "
                  f"{total / elapsed:.0f} ops/s; errors: {len(errors)}; server CPU "
                  f"{cpu * 1000 / max(total, 1):.2f} ms per operation "
                  f"({cpu / elapsed * 100:.0f} % of one core)")
            for error in errors[:5]:
                print("  ", error)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
