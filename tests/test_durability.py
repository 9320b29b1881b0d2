"""A 250 survives a crash: SIGKILL the server in the middle of a stream of
submissions, restart it, and find every acknowledged message in its mailbox.
Also: SIGTERM lets the transaction in flight finish."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mailserver.settings import Settings, load_settings
from tests.conftest import DOMAIN, make_deployment

REPO = Path(__file__).resolve().parent.parent
BOB = f"bob@{DOMAIN}"


def mss(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "--data-dir", str(settings.data_dir), *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    )


def start_serving(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "--data-dir", str(settings.data_dir), "serve"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=log.open("ab"),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with smtplib.SMTP("127.0.0.1", settings.listen.port("smtp"), timeout=2) as probe:
                probe.noop()
            return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()}") from None
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {log.read_text()}")


def stored_tokens(settings: Settings) -> set[str]:
    from directory.service import Directory
    from mailserver.store import Store
    from mailserver.store.database import create_engine
    from mailserver.store.vault import open_vault

    async def go() -> set[str]:
        engine = create_engine(settings.database_url)
        store = Store(engine, open_vault(settings, engine.dialect.name))
        directory = Directory(engine)
        try:
            record = await directory.lookup(BOB)
            assert record is not None
            folder = await store.folder(record.id, "INBOX")
            assert folder is not None
            tokens = set()
            for message in await store.messages(folder.id):
                body = await store.body(message.blob_sha256, mailbox_id=record.id)
                tokens.add(body.split(b"X-Token: ", 1)[1].split(b"\r\n", 1)[0].decode())
            return tokens
        finally:
            await store.close()
            await engine.dispose()

    return asyncio.run(go())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_acknowledged_messages_survive_sigkill(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else ""
    settings = load_settings(make_deployment(tmp_path, url).data_dir)
    mss(settings, "mailbox", "add", BOB, "--type", "PER", "--password", "bob-password-1")
    log = tmp_path / "serve.log"
    server = start_serving(settings, log)
    acknowledged: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def sender(worker: int) -> None:
        sequence = 0
        while not stop.is_set():
            token = f"{worker}-{sequence}"
            sequence += 1
            try:
                with smtplib.SMTP("127.0.0.1", settings.listen.port("smtp"), timeout=5) as c:
                    c.sendmail("lab@other.example", [BOB],
                               f"X-Token: {token}\r\nSubject: t\r\n\r\nbody\r\n".encode())
            except (OSError, smtplib.SMTPException):
                continue  # not acknowledged: the sender would retry
            with lock:
                acknowledged.add(token)

    workers = [threading.Thread(target=sender, args=(i,)) for i in range(8)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(server.pid, signal.SIGKILL)  # in the middle of the stream
    server.wait(10)
    stop.set()
    for worker in workers:
        worker.join(10)
    assert len(acknowledged) >= 150, log.read_text()[-2000:]

    server = start_serving(settings, log)  # restart: recovery must not lose or break anything
    try:
        stored = stored_tokens(settings)
    finally:
        server.terminate()
        server.wait(30)
    missing = acknowledged - stored
    assert not missing, f"{len(missing)} acknowledged messages lost: {sorted(missing)[:10]}"


def test_sigterm_stops_cleanly_and_cli_admin_works(tmp_path: Path) -> None:
    settings = load_settings(make_deployment(tmp_path).data_dir)
    password_file = tmp_path / "pw"
    password_file.write_text("bob-password-1\n")
    out = mss(settings, "mailbox", "add", BOB, "--type", "PER", "--password-file",
              str(password_file)).stdout
    assert f"Created PER mailbox {BOB}" in out
    log = tmp_path / "serve.log"
    server = start_serving(settings, log)
    with smtplib.SMTP("127.0.0.1", settings.listen.port("smtp"), timeout=5) as client:
        client.sendmail("lab@other.example", [BOB], b"X-Token: last\r\n\r\nbody\r\n")
    server.send_signal(signal.SIGTERM)
    assert server.wait(30) == 0
    text = log.read_text()
    assert "signal received, stopping" in text and "stopped" in text
    assert "bob-password-1" not in text and "body" not in text  # no secrets, no content
    assert stored_tokens(settings) == {"last"}
