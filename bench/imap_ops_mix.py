"""Benchmark: N clients (default 10) running a mix of LOGIN, SELECT, FETCH, STORE,
EXPUNGE and APPEND for D seconds (default 20) over TLS; prints operations/second.

    python bench/imap_ops_mix.py [--clients 10] [--seconds 20] [--database-url URL]
                                 [--workers N]

Without --workers the server runs in this process (one event loop, its CPU measured
alone); with --workers N it is `mss serve` with N worker processes (0: one per
core), as deployed. Each client logs in, then runs rounds of SELECT, FETCH, STORE, APPEND, EXPUNGE
and logs in again every 25 rounds (--rounds-per-login). Every IMAP command counts as one operation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import imaplib
import multiprocessing
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes (and their reaped children)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(v) for v in stat[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def _family(pid: int) -> list[int]:
    """The supervisor and its worker processes."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        return [pid, *(int(c) for c in children.read_text().split())]
    return [pid]


@contextlib.contextmanager
def served(data_dir: Path, workers: int, port: int) -> Iterator[list[int]]:
    """`mss serve` with ``workers`` worker processes; yields their pids."""
    toml = data_dir / "mss.toml"
    text = toml.read_text()
    if "workers = 0" not in text:
        raise SystemExit("conf/mss.toml changed: 'workers = 0' not found")
    toml.write_text(text.replace("workers = 0", f"workers = {workers}", 1))
    mss = Path(sys.executable).parent / "mss"
    server = subprocess.Popen([str(mss), "--data-dir", str(data_dir), "serve"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise SystemExit(f"mss serve exited with status {server.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("mss serve did not listen within 60 s") from None
                time.sleep(0.2)
        time.sleep(1.0)  # every worker listening
        yield _family(server.pid)
    finally:
        server.terminate()
        server.wait(30)


def add_mailboxes(settings: object, users: list[str]) -> None:
    from cli.util import open_directory
    from directory.models import MailboxType
    from mailserver.auth import hash_password

    async def add() -> None:
        async with open_directory(settings) as (directory, store):  # type: ignore[arg-type]
            password_hash = hash_password(PASSWORD)
            for user in users:
                record = await directory.add_mailbox(user, MailboxType.PER,
                                                     password_hash=password_hash)
                await store.ensure_folders(record.id)

    asyncio.run(add())


def mix(port: int, cafile: str, users: list[str], seconds: float, rounds: int,
        cpu: object) -> None:
    stop = time.time() + 3 + seconds
    began = time.time() + 3
    # Clients run in their own processes: the server keeps its CPU to itself.
    with multiprocessing.Pool(len(users)) as pool:
        jobs = [(port, cafile, user, began, stop, rounds) for user in users]
        pending = pool.starmap_async(run, jobs)
        time.sleep(max(0.0, began - time.time()))
        before = cpu()  # type: ignore[operator]
        results = pending.get()
        used = cpu() - before  # type: ignore[operator]
    total = sum(r[0] for r in results)
    errors = [e for r in results for e in r[1]]
    print(f"{len(users)} clients, {seconds:.1f} s: {total} operations, "
          f"{total / seconds:.0f} ops/s; errors: {len(errors)}; server CPU "
          f"{used * 1000 / max(total, 1):.2f} ms per operation "
          f"({used / seconds * 100:.0f} % of one core)")
    for error in errors[:5]:
        print("  ", error)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--rounds-per-login", type=int, default=25,
                        help="rounds of SELECT..EXPUNGE between two logins (Argon2 is costly)")
    parser.add_argument("--workers", type=int, default=None,
                        help="run `mss serve` with this many workers (0: one per core)")
    options = parser.parse_args()
    users = [f"mix{n}@hopital.example" for n in range(options.clients)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_deployment(Path(tmp), options.database_url)
        port = settings.listen.port("imaps")
        cafile = str(settings.path(settings.tls.ca))
        if options.workers is not None:
            add_mailboxes(settings, users)
            with served(settings.data_dir, options.workers, port) as pids:
                print(f"mss serve: {options.workers} worker(s) asked, {len(pids)} processes")
                mix(port, cafile, users, options.seconds, options.rounds_per_login,
                    lambda: _cpu_seconds(pids))
            return
        server = start_server(settings)
        try:
            for user in users:
                server.add_mailbox(user, PASSWORD)
            mix(port, cafile, users, options.seconds, options.rounds_per_login,
                time.process_time)  # this process is the server's
        finally:
            server.stop()


if __name__ == "__main__":
    main()
