"""Several `mss serve` processes on one PostgreSQL share one outbound queue and
deliver each message exactly once (claims with FOR UPDATE SKIP LOCKED and a lease)."""

from __future__ import annotations

import re
import signal
import smtplib
import ssl
import time
from pathlib import Path

import pytest

from tests.conftest import ServerThread
from tests.relay_setup import DOMAIN_A, DOMAIN_B, PASSWORD, make_operators, mss, tune, wait_for
from tests.test_durability import start_serving

ALICE = f"alice@{DOMAIN_A}"
BRUNO = f"bruno@{DOMAIN_B}"
COUNT = 60


@pytest.mark.slow
def test_two_processes_deliver_each_message_once(tmp_path: Path, postgres_url: str) -> None:
    operators = make_operators(tmp_path, postgres_url)
    # Two worker processes, small claims so that both take part.
    a = tune(operators.a, workers="2", batch="4")
    mss(a, "mailbox", "add", ALICE, "--type", "PER", "--password", PASSWORD)
    log = tmp_path / "a.log"
    serving = start_serving(a, log)
    try:
        context = ssl.create_default_context(cafile=a.path(a.tls.ca))
        # B is down: every message is queued, claimed, deferred, claimed again...
        with smtplib.SMTP("127.0.0.1", a.listen.port("submission"), timeout=10) as client:
            client.starttls(context=context)
            client.login(ALICE, PASSWORD)
            for n in range(COUNT):
                body = (f"From: <{ALICE}>\r\nTo: <{BRUNO}>\r\nSubject: shared-{n}\r\n\r\n"
                        f"n={n}\r\n").encode()
                assert client.sendmail(ALICE, [BRUNO], body) == {}
        time.sleep(1.0)
        mss(operators.b, "mailbox", "add", BRUNO, "--type", "PER", "--password", PASSWORD)
        b = ServerThread(operators.b).start()  # ...until B comes up
        try:
            wait_for(lambda: len(b.inbox(BRUNO)) >= COUNT, timeout=60, what="all delivered")
            time.sleep(2.0)  # any duplicate would arrive now
            subjects = [re.search(rb"Subject: (shared-\d+)", m).group(1)  # type: ignore[union-attr]
                        for m in b.inbox(BRUNO)]
            assert sorted(subjects) == sorted(f"shared-{n}".encode() for n in range(COUNT))
        finally:
            b.stop()
    finally:
        serving.send_signal(signal.SIGTERM)
        serving.wait(30)
    text = log.read_text()
    # Both processes delivered part of the queue.
    delivered_by = set(re.findall(r"\[(w\d)\] mailserver\.queue: queue: id=\S+ to ", text))
    assert delivered_by == {"w0", "w1"}, text[-3000:]
    assert serving.returncode == 0
    assert "Traceback" not in text
