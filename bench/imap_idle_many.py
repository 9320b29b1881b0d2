"""Benchmark: many authenticated IDLE connections over TLS on one server process.

    python bench/imap_idle_many.py [--connections 10000] [--database-url URL]

Opens the connections (all on one mailbox's INBOX, from client processes), puts
each in IDLE, reports the server's RSS, then delivers one message and measures
how long until every connection has reported EXISTS. Issue 4 target: 10,000
connections under 1 GB, each notified within 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import make_deployment, start_server

ADDRESS = "idle@hopital.example"
PASSWORD = "bench-password-1"


async def _one(port: int, context: ssl.SSLContext, ready: asyncio.Event,
               opened: list[int], done: list[float], go: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                   server_hostname="localhost")
    await reader.readline()
    writer.write(f'a LOGIN {ADDRESS} "{PASSWORD}"\r\nb SELECT INBOX\r\nc IDLE\r\n'.encode())
    while not (await reader.readline()).startswith(b"+ "):
        pass
    opened[0] += 1
    await go.wait()
    while b"EXISTS" not in await reader.readline():
        pass
    done.append(time.monotonic())
    writer.write(b"DONE\r\nd LOGOUT\r\n")
    writer.close()


def _rss_mib() -> int:
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) // 1024


def _raise_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def client_process(port: int, cafile: str, count: int, conn: object) -> None:
    _raise_file_limit()

    async def main() -> None:
        context = ssl.create_default_context(cafile=cafile)
        opened = [0]
        done: list[float] = []
        go = asyncio.Event()
        ready = asyncio.Event()
        tasks = []
        for start in range(0, count, 200):
            tasks += [asyncio.create_task(_one(port, context, ready, opened, done, go))
                      for _ in range(min(200, count - start))]
            while opened[0] < len(tasks):  # noqa: ASYNC110 - a polling benchmark
                await asyncio.sleep(0.05)
        conn.send(opened[0])  # type: ignore[attr-defined]
        go.set()
        conn.recv()  # type: ignore[attr-defined]
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        conn.send(done)  # type: ignore[attr-defined]

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--database-url", default="")
    options = parser.parse_args()
    _raise_file_limit()
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_deployment(Path(tmp), options.database_url)
        toml = settings.data_dir / "mss.toml"
        toml.write_text(toml.read_text().replace("max_connections_per_ip = 100",
                                                 "max_connections_per_ip = 100000"))
        from tests.conftest import reload

        server = start_server(reload(settings))
        try:
            record = server.add_mailbox(ADDRESS, PASSWORD)
            port = server.port("imaps")
            cafile = str(server.settings.path(server.settings.tls.ca))
            baseline = _rss_mib()
            per = options.connections // options.processes
            pipes = []
            began = time.monotonic()
            for _ in range(options.processes):
                parent, child = multiprocessing.Pipe()
                multiprocessing.Process(target=client_process,
                                        args=(port, cafile, per, child), daemon=True).start()
                pipes.append(parent)
            opened = sum(p.recv() for p in pipes)
            rss = _rss_mib()
            print(f"{opened} connections in IDLE after {time.monotonic() - began:.1f} s; "
                  f"server process RSS {rss} MiB, {baseline} MiB before them "
                  f"(clients run in other processes)")
            sent = time.monotonic()

            async def deliver() -> None:
                await server.app.store.deliver([record.id], b"Subject: ping\r\n\r\nping\r\n")

            server.call(deliver())
            for pipe in pipes:
                pipe.send("go")
            done = [t for p in pipes for t in p.recv()]
            print(f"{len(done)} notified; last after {max(done) - sent:.2f} s, "
                  f"median {sorted(done)[len(done) // 2] - sent:.2f} s")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
