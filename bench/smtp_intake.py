"""SMTP intake benchmark (issue 2): 10 concurrent sessions, 2,000 messages of
4 KiB, a new connection per message, durable delivery into one mailbox.

    python bench/smtp_intake.py                # SQLite (WAL, synchronous=FULL)
    python bench/smtp_intake.py --postgres     # PostgreSQL on 127.0.0.1:5432

The server runs as its own `mss serve` process; the client is a lean asyncio
SMTP client (real TCP, real protocol) so that it takes little of the 2 cores.
Prints messages/s delivered and p50/p99 latency of the reply to the final dot.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RECIPIENT = "bench@hopital.example"


def mss(data_dir: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "cli", "--data-dir", str(data_dir), *args],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return line


async def send_one(port: int, body: bytes) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await read_reply(reader)
        # RFC 2920 pipelining: EHLO, then MAIL/RCPT/DATA in one write.
        writer.write(b"EHLO bench.example\r\n")
        await read_reply(reader)
        writer.write(b"MAIL FROM:<lab@other.example>\r\nRCPT TO:<" + RECIPIENT.encode()
                     + b">\r\nDATA\r\n")
        for _ in range(3):
            reply = await read_reply(reader)
        if not reply.startswith(b"354"):
            raise RuntimeError(reply)
        started = time.perf_counter()
        writer.write(body + b".\r\n")
        reply = await read_reply(reader)
        latency = time.perf_counter() - started
        if not reply.startswith(b"250"):
            raise RuntimeError(reply)
        writer.write(b"QUIT\r\n")
        await read_reply(reader)
        return latency
    finally:
        writer.close()


async def run_load(port: int, messages: int, concurrency: int) -> tuple[float, list[float]]:
    line = b"x" * 76 + b"\r\n"
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(messages):
        queue.put_nowait(i)
    latencies: list[float] = []

    async def session() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            header = (f"From: lab@other.example\r\nTo: {RECIPIENT}\r\n"
                      f"Subject: result {i}\r\nMessage-ID: <{uuid.uuid4().hex}@other.example>"
                      "\r\n\r\n").encode()
            body = header + line * ((4096 - len(header)) // len(line))
            latencies.append(await send_one(port, body))

    started = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a server (supervisor and workers), from /proc."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # itself or a child
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def create_postgres_database(admin_url: str) -> str:
    import asyncpg

    name = f"mss_bench_{uuid.uuid4().hex[:8]}"

    async def go() -> None:
        connection = await asyncpg.connect(admin_url)
        await connection.execute(f'CREATE DATABASE "{name}"')
        await connection.close()

    asyncio.run(go())
    server_url = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{server_url}/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--postgres", nargs="?", const="postgresql://postgres@127.0.0.1:5432/test",
                        default=None, metavar="ADMIN_URL")
    parser.add_argument("--port-base", type=int, default=30000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        data_dir = Path(temp) / "bench"
        env = dict(os.environ)
        backend = "SQLite (WAL, synchronous=FULL)"
        if args.postgres:
            env["MSS_DATABASE_URL"] = create_postgres_database(args.postgres)
            backend = "PostgreSQL"
        subprocess.run([sys.executable, "-m", "cli", "init", "--data-dir", str(data_dir),
                        "--domain", "hopital.example", "--patient-domain", "patient.example",
                        "--port-base", str(args.port_base)], cwd=REPO, check=True, env=env,
                       stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, "-m", "cli", "--data-dir", str(data_dir), "mailbox",
                        "add", RECIPIENT, "--type", "ORG", "--password", "bench-password"],
                       cwd=REPO, check=True, env=env, stdout=subprocess.DEVNULL)
        server = subprocess.Popen(
            [sys.executable, "-m", "cli", "--data-dir", str(data_dir), "serve"],
            cwd=REPO, env={**env, "MSS_LOG_LEVEL": "WARNING"},
        )
        port = args.port_base + 25
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    asyncio.run(send_one(port, b"Subject: warm-up\r\n\r\nx\r\n"))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            cpu_before = cpu_seconds(server.pid)
            elapsed, latencies = asyncio.run(run_load(port, args.messages, args.concurrency))
            server_cpu = cpu_seconds(server.pid) - cpu_before
        finally:
            server.terminate()
            server.wait(30)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"backend      {backend}")
    print(f"messages     {args.messages} x 4 KiB, {args.concurrency} concurrent sessions, "
          "one connection per message")
    print(f"delivered    {args.messages / elapsed:.0f} messages/s ({elapsed:.2f} s)")
    print(f"DATA reply   p50 {p50:.1f} ms   p99 {p99:.1f} ms")
    print(f"server CPU   {server_cpu * 1000 / args.messages:.2f} ms per message "
          f"(all threads; {os.getloadavg()[0]:.1f} load average during the run)")


if __name__ == "__main__":
    main()
