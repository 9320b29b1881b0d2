"""Benchmark: many authenticated IDLE connections over TLS held by one server process.

    .venv/bin/python bench/imap_idle_many.py --clients 10000 [--mailboxes 1]
        [--processes 4] [--rounds 3] [--database-url URL]

Issue 4 target: 10,000 connections in IDLE over TLS (port 993) held by one server
process (`mss serve` with `server.workers = 1`) under 1 GB RSS, each notified of a
new message within 2 s.

What it does: `mss init` in a temporary directory, mailboxes created there (with a
cheap Argon2id hash: only this throw-away deployment has it, the defaults are not
touched), `mss serve` started as its own process. Client processes (raw
asyncio + ssl protocols, no IMAP library) open the connections, each LOGIN, SELECT
INBOX, IDLE; connections are spread over the mailboxes. The server's RSS is read
from /proc. Then, ``--rounds`` times, one message is sent over SMTP (port 25) to
every mailbox and each connection timestamps the ``EXISTS`` it receives; the
latency distribution is measured from just before the SMTP transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSWORD = "bench-password-1"
DOMAIN = "hopital.example"
OPEN_IN_FLIGHT = 64  # handshakes + logins in flight per client process


def address(index: int) -> str:
    return f"idle{index}@{DOMAIN}"


# ---- client processes ---------------------------------------------------------------


class IdleClient(asyncio.Protocol):
    """One IMAP connection: LOGIN, SELECT, IDLE, then a timestamp per EXISTS."""

    def __init__(self, login: str, idling: asyncio.Future[None], seen: list[float]) -> None:
        self._login = login
        self._idling = idling
        self._seen = seen
        self._buffer = b""
        self._greeted = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\r\n")
        for line in lines:
            if not self._greeted:
                self._greeted = True
                assert self.transport is not None
                self.transport.write(f'a LOGIN {self._login} "{PASSWORD}"\r\n'
                                     "b SELECT INBOX\r\nc IDLE\r\n".encode())
            elif line.startswith(b"+ ") and not self._idling.done():
                self._idling.set_result(None)
            elif line.startswith((b"a NO", b"a BAD", b"b NO", b"b BAD", b"c BAD", b"* BYE")):
                if not self._idling.done():
                    self._idling.set_exception(RuntimeError(line.decode()))
            elif self._idling.done() and line.endswith(b" EXISTS"):
                self._seen.append(now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._idling.done():
            self._idling.set_exception(ConnectionError(f"closed while opening: {exc}"))


def _raise_file_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; returns it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def client_process(port: int, cafile: str, logins: list[str], pipe: Connection) -> None:
    _raise_file_limit()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context(cafile=cafile)
        seen: list[float] = []
        gate = asyncio.Semaphore(OPEN_IN_FLIGHT)
        clients: list[IdleClient] = []
        failures: list[str] = []

        async def open_one(login: str) -> None:
            async with gate:
                idling: asyncio.Future[None] = loop.create_future()
                try:
                    _, client = await loop.create_connection(
                        lambda: IdleClient(login, idling, seen), "127.0.0.1", port,
                        ssl=context, server_hostname="localhost")
                    await asyncio.wait_for(idling, 120)
                    clients.append(client)
                except (OSError, RuntimeError, TimeoutError) as error:
                    failures.append(str(error)[:200])

        await asyncio.gather(*(open_one(login) for login in logins))
        pipe.send((len(clients), failures[:3]))
        while True:
            command = await loop.run_in_executor(None, pipe.recv)
            if command == "stop":
                break
            # The server notified; wait until every client saw the round's EXISTS.
            expected = int(command)
            deadline = time.monotonic() + 30
            while len(seen) < expected * len(clients) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            pipe.send(seen[-len(clients):] if len(seen) >= len(clients) else list(seen))
            del seen[:]
        for client in clients:
            if client.transport is not None:
                client.transport.abort()

    asyncio.run(main())


# ---- the server process --------------------------------------------------------------


def _rss_mib(pid: int) -> tuple[float, float]:
    """The process's resident set and its peak (VmHWM), in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the server did not listen on {port} within {timeout} s")


def prepare(data_dir: Path, clients: int, mailboxes: int, database_url: str) -> None:
    from argon2 import PasswordHasher

    from cli.util import open_directory
    from directory.models import MailboxType
    from mailserver.deployment import init_deployment
    from tests.conftest import free_port_base

    settings = asyncio.run(init_deployment(
        data_dir, domains=[DOMAIN], patient_domain="patient.example",
        port_base=free_port_base(), hostname="localhost", database_url=database_url,
    ))
    toml = data_dir / "mss.toml"
    text = toml.read_text()
    for default, wanted in [
        ("workers = 0", "workers = 1"),  # one server process, measured alone
        ("max_connections_per_ip = 100\n", f"max_connections_per_ip = {clients + 100}\n"),
        ("max_connections = 20000", f"max_connections = {max(clients + 100, 20000)}"),
    ]:
        if default not in text:
            raise SystemExit(f"conf/mss.toml changed: {default!r} not found")
        text = text.replace(default, wanted, 1)
    toml.write_text(text)
    # Only in this throw-away deployment: a cheap Argon2id hash, so that creating
    # many mailboxes takes seconds. Logins after the first are served by the
    # server's verified-password cache whatever the hash costs.
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)

    async def add() -> None:
        async with open_directory(settings) as (directory, store):
            for index in range(mailboxes):
                record = await directory.add_mailbox(address(index), MailboxType.PER,
                                                     password_hash=cheap)
                await store.ensure_folders(record.id)

    asyncio.run(add())


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", "--connections", type=int, default=10_000)
    parser.add_argument("--mailboxes", type=int, default=1,
                        help="connections are spread over this many mailboxes (at most 100)")
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--rounds", type=int, default=3, help="deliveries measured")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--server-log", type=Path, help="keep the server's output there")
    options = parser.parse_args()
    if not 1 <= options.mailboxes <= 100:
        parser.error("--mailboxes: 1 to 100 (one message to all of them per round)")
    limit = _raise_file_limit()
    per_process = -(-options.clients // options.processes)
    if per_process + 100 > limit:
        parser.error(f"{per_process} connections per client process exceed RLIMIT_NOFILE "
                     f"{limit}: give more --processes")

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "deployment"
        began = time.monotonic()
        prepare(data_dir, options.clients, options.mailboxes, options.database_url)
        from mailserver.settings import load_settings

        settings = load_settings(data_dir)
        mss = Path(sys.executable).parent / "mss"
        log = open(options.server_log or Path(tmp) / "server.log", "wb")
        server = subprocess.Popen([str(mss), "--data-dir", str(data_dir), "serve"],
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            port = settings.listen.port("imaps")
            _wait_for_port(port, server)
            _wait_for_port(settings.listen.port("smtp"), server)
            print(f"prepared {options.mailboxes} mailbox(es) and started the server "
                  f"(pid {server.pid}, one worker) in {time.monotonic() - began:.1f} s")
            baseline, _ = _rss_mib(server.pid)
            cafile = str(settings.path(settings.tls.ca))
            logins = [address(i % options.mailboxes) for i in range(options.clients)]
            context = multiprocessing.get_context("spawn")
            pipes: list[Connection] = []
            processes = []
            opening = time.monotonic()
            cpu_before = _cpu_seconds(server.pid)
            for index in range(options.processes):
                parent, child = context.Pipe()
                share = logins[index::options.processes]
                process = context.Process(target=client_process,
                                          args=(port, cafile, share, child), daemon=True)
                process.start()
                processes.append(process)
                pipes.append(parent)
            opened = 0
            for pipe in pipes:
                count, failures = pipe.recv()
                opened += count
                for failure in failures:
                    print(f"  a connection failed: {failure}")
            took = time.monotonic() - opening
            rss, peak = _rss_mib(server.pid)
            cpu = _cpu_seconds(server.pid) - cpu_before
            print(f"{opened} of {options.clients} connections in IDLE over TLS after "
                  f"{took:.1f} s (server CPU {cpu:.1f} s)")
            print(f"server process RSS {rss:.0f} MiB ({baseline:.0f} MiB before the "
                  f"connections, peak {peak:.0f} MiB); "
                  f"{(rss - baseline) * 1024 / max(opened, 1):.1f} KiB per connection")
            recipients = [address(i) for i in range(options.mailboxes)]
            worst = 0.0
            for round_ in range(1, options.rounds + 1):
                time.sleep(0.5)
                cpu_before = _cpu_seconds(server.pid)
                sent = time.monotonic()
                with smtplib.SMTP("127.0.0.1", settings.listen.port("smtp"), timeout=30) as smtp:
                    smtp.sendmail("bench@elsewhere.example", recipients,
                                  f"From: bench@elsewhere.example\r\nSubject: ping {round_}"
                                  "\r\n\r\nping\r\n".encode())
                accepted = time.monotonic()
                for pipe in pipes:
                    pipe.send(str(1))
                seen = [t for pipe in pipes for t in pipe.recv()]
                cpu = _cpu_seconds(server.pid) - cpu_before
                latencies = [t - sent for t in seen]
                if len(latencies) < opened:
                    print(f"round {round_}: only {len(latencies)} of {opened} notified")
                if not latencies:
                    continue
                worst = max(worst, max(latencies))
                print(f"round {round_}: {len(latencies)} notified; 250 after "
                      f"{accepted - sent:.3f} s; EXISTS p50 {_percentile(latencies, 0.5):.3f} s, "
                      f"p99 {_percentile(latencies, 0.99):.3f} s, max {max(latencies):.3f} s "
                      f"(server CPU {cpu:.2f} s)")
            rss, peak = _rss_mib(server.pid)
            print(f"server process RSS after the rounds {rss:.0f} MiB (peak {peak:.0f} MiB); "
                  f"worst notification {worst:.3f} s; load {os.getloadavg()[0]:.2f}")
            for pipe in pipes:
                pipe.send("stop")
            for process in processes:
                process.join(30)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()


if __name__ == "__main__":
    main()
