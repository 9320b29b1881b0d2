"""Message-stage policy benchmark (issue 5): what deciding on a message costs, with
a store holding 10,000 threads.

    python bench/policies.py                  # SQLite
    python bench/policies.py --threads 2000   # a quicker run
    python bench/policies.py --pdf-size 100000  # a structured message with a 100 kB PDF

Fills a fresh deployment through the real pipeline (a professional opens 10,000
threads with 200 patients), then times, per message, the message stage the
pipeline runs after DATA: ``_message_context`` (To/Cc resolution, the thread
look-up in the author's mailbox, the content analysis when there are
attachments) plus ``policies.decide_message``. Scenarios: a plain professional
message, a patient's reply inside a thread, a structured message (XDM + PDF).
Prints p50 / p99 in milliseconds; the issue's target is p99 < 1 ms per message.
The structured message's stage is also split in two: the content analysis (zip,
XDM metadata, CDA, sniffing; it grows with the message, bench/content_stages.py
--sizes) and the rest: the rules and their context (directory, the thread
look-up), and for a body over 64 KiB the hop to the worker thread that analyses it.
The structured messages (each with a new PDF) are built before the timed loop.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from email.policy import SMTP
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import mailserver.pipeline as pipeline_module  # noqa: E402
import policies  # noqa: E402
from directory.ins import nir_control_key  # noqa: E402
from directory.models import MailboxType  # noqa: E402
from mailserver.app import Application  # noqa: E402
from mailserver.auth import hash_password  # noqa: E402
from mailserver.deployment import init_deployment  # noqa: E402
from mailserver.health import build  # noqa: E402
from mailserver.pipeline import Submission, parse_headers  # noqa: E402
from mailserver.store.migrate import upgrade  # noqa: E402
from policies.context import Door, RecipientContext  # noqa: E402

DOMAIN = "hopital.example"
PATIENT_DOMAIN = "patient.example"
DOCTOR = f"dr.bench@{DOMAIN}"
COLLEAGUE = f"dr.other@{DOMAIN}"


def ins(number: int) -> str:
    first13 = f"1{80 + number % 20:02d}01{75000 + number:05d}{number % 1000:03d}"[:13]
    return f"{first13}{nir_control_key(first13):02d}"


async def fill(app: Application, threads: int, patients: int) -> list[tuple[str, str]]:
    """Open ``threads`` threads through the pipeline; (patient, message-id) of each."""
    directory, store = app.directory, app.store
    doctor = await directory.add_mailbox(DOCTOR, MailboxType.PER,
                                         password_hash=hash_password("bench-password"))
    await store.ensure_folders(doctor.id)
    colleague = await directory.add_mailbox(COLLEAGUE, MailboxType.PER, password_hash="x")
    await store.ensure_folders(colleague.id)
    addresses = []
    for n in range(patients):
        record = await directory.add_patient(
            ins=ins(n), family_name=f"PATIENT{n}", given_names="Bench",
            birthdate=dt.date(1980, 1, 1), patient_domain=PATIENT_DOMAIN, password_hash="x")
        await store.ensure_folders(record.id)
        addresses.append(record.address)
    opened: list[tuple[str, str]] = []

    async def open_one(i: int) -> None:
        patient = addresses[i % patients]
        message_id = f"<{uuid.uuid4().hex}@{DOMAIN}>"
        raw = (f"From: {DOCTOR}\r\nTo: {patient}\r\nSubject: suivi {i}\r\n"
               f"Message-ID: {message_id}\r\n\r\nBonjour\r\n").encode()
        outcome = await app.pipeline.submit(Submission(
            Door.SUBMISSION, DOCTOR, (patient,), raw, authenticated=doctor))
        assert outcome.accepted, outcome.decision
        opened.append((patient, message_id))

    started = time.perf_counter()
    for batch in range(0, threads, 250):
        await asyncio.gather(*(open_one(i) for i in range(batch, min(batch + 250, threads))))
    print(f"filled {threads} threads in {time.perf_counter() - started:.1f} s")
    return opened


ANALYSIS: list[float] = []  # seconds spent in the content analysis of the last stage


def _timed_analyse(*args: Any) -> Any:
    started = time.perf_counter()
    try:
        return _analyse(*args)
    finally:
        ANALYSIS.append(time.perf_counter() - started)


_analyse = pipeline_module.analyse
pipeline_module.analyse = _timed_analyse  # type: ignore[assignment]


async def stage(app: Application, login: str, to: str, raw: bytes) -> float:
    """Seconds for the message stage of one message (its envelope already decided)."""
    pipeline = app.pipeline
    record = await app.directory.lookup(login)
    memo: dict[str, object] = {}
    sender = await pipeline.sender_context(Door.SUBMISSION, record, login, memo)  # type: ignore[arg-type]
    recipient = await pipeline.resolve(to, memo)  # type: ignore[arg-type]
    assert not isinstance(policies.decide_recipient(RecipientContext(sender, recipient)),
                          policies.Reject)
    started = time.perf_counter()
    headers = parse_headers(raw)  # as the pipeline does: the header block only
    context, decision = await pipeline._message_context(  # the stage the pipeline runs
        sender, [recipient], headers, memo, raw)  # type: ignore[arg-type]
    assert context is not None
    decision = policies.decide_message(context)
    elapsed = time.perf_counter() - started
    assert not isinstance(decision, policies.Reject), decision
    return elapsed


def report(name: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"{name:<34} n={len(ms):5d}  p50 {statistics.median(ms):6.3f} ms  p99 {p99:6.3f} ms")


def structured_message(patient: build.Patient, pdf_size: int) -> bytes:
    """An XDM + PDF message as practice software sends it, its PDF new each time."""
    message = build.structured_message(
        sender=DOCTOR, recipient=COLLEAGUE, patient=patient, info=build.DocumentInfo(),
        pdf=b"%PDF-1.7\n" + os.urandom(pdf_size))
    return message.as_bytes(policy=SMTP)


async def main(threads: int, samples: int, pdf_size: int, build_inline: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = await init_deployment(Path(tmp) / "dep", domains=[DOMAIN],
                                         patient_domain=PATIENT_DOMAIN, port_base=0)
        app = Application(settings)
        await upgrade(app.engine)
        try:
            opened = await fill(app, threads, patients=200)
            plain, reply, structured, analysis = [], [], [], []
            patient0 = build.Patient(ins(0), "PATIENT0", "Bench", dt.date(1980, 1, 1))
            # Built beforehand: a server receives its messages, it never builds one (zipfile's
            # deflate, the email package's generator) just before analysing it, which would
            # time the stage in caches that work left cold (--build-inline, to compare).
            # Each message's bytes are out of the core's caches when its stage starts.
            pool = max(1, min(samples // 5 + 1, 64_000_000 // (3 * pdf_size + 8_000)))
            messages = [] if build_inline else [structured_message(patient0, pdf_size)
                                                for _ in range(pool)]
            for i in range(samples):
                patient, message_id = opened[(i * 7919) % len(opened)]
                raw = (f"From: {DOCTOR}\r\nTo: {COLLEAGUE}\r\nSubject: avis {i}\r\n"
                       f"Message-ID: <{uuid.uuid4().hex}@{DOMAIN}>\r\n\r\nBonjour\r\n").encode()
                plain.append(await stage(app, DOCTOR, COLLEAGUE, raw))
                raw = (f"From: {patient}\r\nTo: {DOCTOR}\r\nSubject: Re: suivi\r\n"
                       f"In-Reply-To: {message_id}\r\nReferences: {message_id}\r\n"
                       f"Message-ID: <{uuid.uuid4().hex}@{PATIENT_DOMAIN}>\r\n\r\nMerci\r\n"
                       ).encode()
                reply.append(await stage(app, patient, DOCTOR, raw))
                if i % 5 == 0:
                    message = (structured_message(patient0, pdf_size) if build_inline
                               else messages[(i // 5) % len(messages)])
                    ANALYSIS.clear()
                    structured.append(await stage(app, DOCTOR, COLLEAGUE, message))
                    analysis.append(sum(ANALYSIS))
            report("plain professional message", plain)
            report("patient reply within a thread", reply)
            report("structured message (XDM + PDF)", structured)
            report("  of which content analysis", analysis)
            rules = [s - a for s, a in zip(structured, analysis, strict=True)]
            report("  of which the rest", rules)
        finally:
            await app.store.close()
            await app.engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--pdf-size", type=int, default=20_000,
                        help="bytes of the structured message's PDF (beside the zip, in the CDA)")
    parser.add_argument("--build-inline", action="store_true",
                        help="build each structured message just before its stage")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.threads, arguments.samples, arguments.pdf_size,
                     arguments.build_inline))
