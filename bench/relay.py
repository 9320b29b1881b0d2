"""Relay benchmark (issue 7): operator A → operator B through the trust space.

    python bench/relay.py                 # 2,000 messages of 4 KiB, both on SQLite
    python bench/relay.py --postgres      # A's queue on PostgreSQL

Two deployments on loopback, each an `mss serve` process (workers per core),
cross-trusted as in tests/relay_setup.py. Ten authenticated submission sessions
send to A (STARTTLS, AUTH, one connection per session); A DKIM-signs (Ed25519),
queues in its database and relays over mutual TLS to B, which verifies DKIM
and stores. End-to-end latency = time stored at B (its INTERNALDATE) minus the
time the client began the message's DATA at A. S/MIME is on (as in
tests/relay_setup.py `enable_smime`): A wraps, signs with its operator
certificate and encrypts to B's domain certificate and its own; B decrypts,
verifies and unwraps. `--key-type ec256` uses ECDSA/ECDH P-256 operator keys
instead of RSA-2048; `--no-smime` measures the relay alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mailserver.settings import Settings  # noqa: E402
from tests.relay_setup import (  # noqa: E402
    DOMAIN_A,
    DOMAIN_B,
    PASSWORD,
    enable_smime,
    make_operators,
    mss,
    tune,
)

SENDER = f"alice@{DOMAIN_A}"
RECIPIENT = f"bruno@{DOMAIN_B}"


def serve(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "--data-dir", str(settings.data_dir), "serve"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=log.open("ab"),
        env={**os.environ, "MSS_LOG_LEVEL": "WARNING"},
    )
    deadline = time.monotonic() + 120  # a loaded machine starts slowly
    while True:
        try:
            with __import__("socket").create_connection(
                ("127.0.0.1", settings.listen.port("smtp")), timeout=1
            ):
                return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(log.read_text()) from None
            time.sleep(0.2)


async def submit_all(a: Settings, messages: int, concurrency: int) -> dict[int, float]:
    context = ssl.create_default_context(cafile=a.path(a.tls.ca))
    line = b"x" * 76 + b"\r\n"
    pending = list(range(messages))
    started: dict[int, float] = {}

    async def session() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=a.listen.port("submission"),
                                 start_tls=True, tls_context=context, timeout=60)
        await client.connect()
        await client.login(SENDER, PASSWORD)
        while pending:
            i = pending.pop()
            header = (f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: bench {i}\r\n"
                      f"Message-ID: <bench-{i}@{DOMAIN_A}>\r\n\r\n").encode()
            body = header + line * ((4096 - len(header)) // len(line))
            started[i] = time.time()
            await client.sendmail(SENDER, [RECIPIENT], body)
        await client.quit()

    await asyncio.gather(*(session() for _ in range(concurrency)))
    return started


async def arrivals(b: Settings) -> dict[int, float]:
    """Index of each message stored at B -> when B stored it."""
    from sqlalchemy import select

    from mailserver.store.database import create_engine
    from mailserver.store.models import Message

    engine = create_engine(b.database_url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(
                select(Message.message_id, Message.internal_date)
            )).all()
    finally:
        await engine.dispose()
    found = {}
    for message_id, when in rows:
        match = re.match(r"<bench-(\d+)@", message_id or "")
        if match:
            stamp = when.replace(tzinfo=__import__("datetime").UTC) if when.tzinfo is None else when
            found[int(match.group(1))] = stamp.timestamp()
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a server process and its worker processes: a
    figure that does not depend on what else the machine runs."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def drop_database(admin_url: str, database_url: str) -> None:
    import asyncpg

    name = database_url.rsplit("/", 1)[1]

    async def go() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--postgres", nargs="?", const="postgresql://postgres@127.0.0.1:5432/test",
                        default=None, metavar="ADMIN_URL")
    parser.add_argument("--no-smime", action="store_true", help="relay without S/MIME")
    parser.add_argument("--key-type", choices=("ec256", "rsa2048"), default="rsa2048",
                        help="operator S/MIME keys (default RSA-2048, as IGC-Santé)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        database_url = ""
        if args.postgres:
            from bench.smtp_intake import create_postgres_database

            database_url = create_postgres_database(args.postgres)
        operators = make_operators(root, database_url)
        if not args.no_smime:
            enable_smime(operators, args.key_type)
            operators.reload()
        a, b = operators.a, tune(operators.b)
        mss(a, "mailbox", "add", SENDER, "--type", "PER", "--password", PASSWORD)
        mss(b, "mailbox", "add", RECIPIENT, "--type", "PER", "--password", PASSWORD)
        servers: list[subprocess.Popen[bytes]] = []
        try:
            servers.append(serve(b, root / "b.log"))
            servers.append(serve(a, root / "a.log"))
            time.sleep(2)  # workers finish starting
            idle_cpu = [cpu_seconds(server.pid) for server in servers]
            t0 = time.time()
            client_cpu = time.process_time()
            started = asyncio.run(submit_all(a, args.messages, args.concurrency))
            client_cpu = time.process_time() - client_cpu
            submitted = time.time() - t0
            deadline = time.monotonic() + 600
            while True:
                stored = asyncio.run(arrivals(b))
                if len(stored) >= args.messages or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            cpu = [cpu_seconds(s.pid) - i for s, i in zip(servers, idle_cpu, strict=True)]
        finally:
            for server in servers:
                server.terminate()
                server.wait(30)
            if args.postgres:
                drop_database(args.postgres, database_url)
    if len(stored) < args.messages:
        raise SystemExit(f"only {len(stored)} of {args.messages} messages arrived at B")
    elapsed = max(stored.values()) - t0
    latencies = sorted(stored[i] - started[i] for i in started)
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"backend       A: {'PostgreSQL' if args.postgres else 'SQLite'}, B: SQLite")
    print(f"messages      {args.messages} x 4 KiB, {args.concurrency} submission sessions, "
          "DKIM Ed25519, mutual TLS, "
          + ("no S/MIME" if args.no_smime else f"S/MIME signed+encrypted ({args.key_type})"))
    print(f"submitted     {args.messages / submitted:.0f} messages/s at A ({submitted:.2f} s)")
    print(f"end to end    {args.messages / elapsed:.0f} messages/s stored at B ({elapsed:.2f} s)")
    cpu_b, cpu_a = cpu
    print(f"server CPU    A {cpu_a * 1000 / args.messages:.2f} ms/message, "
          f"B {cpu_b * 1000 / args.messages:.2f} ms/message, "
          f"client {client_cpu * 1000 / args.messages:.2f} ms/message; all on "
          f"{os.cpu_count()} idle cores: at most "
          f"{(os.cpu_count() or 1) * args.messages / (cpu_a + cpu_b + client_cpu):.0f} "
          "messages/s")
    print(f"latency       p50 {p50:.0f} ms   p99 {p99:.0f} ms (DATA at A -> stored at B)")


if __name__ == "__main__":
    main()
