"""Where the content analysis of a structured message spends its time (issue 5): the
steps of ``health.content.analyse`` timed one after the other on the message
bench/policies.py sends (an IHE XDM zip holding METADATA.XML and a CDA, beside a
20 kB PDF), each message new, as a server meets them.

    python bench/content_stages.py               # 300 messages, 3 rounds
    python bench/content_stages.py --evict       # 8 MB of other memory traffic before
                                                 # each message: caches as cold as in
                                                 # the full bench

Prints the median of each step in microseconds and the median of ``analyse`` itself
(the steps' sum is close to it, not equal: timers and glue). The split tells what
is C library work (inflate, libxml2, SHA-1, base64, Hyperscan) and what is Python.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from email.policy import SMTP
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from directory.ins import nir_control_key  # noqa: E402
from mailserver.health import build, content, mssante  # noqa: E402
from mailserver.health.attachments import sniff  # noqa: E402
from mailserver.health.safezip import is_zip, read_zip  # noqa: E402
from mailserver.health.xdm import METADATA, read_xdm_contents  # noqa: E402
from mailserver.health.xmlsafe import parse_xml  # noqa: E402
from mailserver.mime.parse import ParsedMessage  # noqa: E402
from mailserver.pipeline import _rule_headers, parse_headers  # noqa: E402
from mailserver.settings import AttachmentSettings, load_settings  # noqa: E402


def _message() -> bytes:
    first13 = "1800175000000"
    patient = build.Patient(f"{first13}{nir_control_key(first13):02d}", "PATIENT0", "Bench",
                            dt.date(1980, 1, 1))
    message = build.structured_message(
        sender="dr.bench@hopital.example", recipient="dr.other@hopital.example",
        patient=patient, info=build.DocumentInfo(), pdf=b"%PDF-1.7\n" + os.urandom(20_000))
    return message.as_bytes(policy=SMTP)


def _steps(raw: bytes, fields: dict[str, tuple[str, ...]], settings: AttachmentSettings,
           times: dict[str, list[float]]) -> None:
    """The steps of ``content._analyse`` for this message, each timed."""
    clock = time.perf_counter
    limits = content.scan_limits(settings)
    started = clock()
    message = ParsedMessage.from_bytes(raw, max_parts=settings.max_mime_parts + 1)
    leaves, _ = content._leaves(message, settings)
    mime = clock()
    decoded = [(content._disposition(part)[1], content._content(part)) for part in leaves]
    decoding = clock()
    archive = next(data for _, data in decoded if is_zip(data))
    for name, data in decoded:
        if data is not archive:
            sniff(data, name, limits)
    others = clock()
    contents = read_zip(archive, limits.zip)
    unzip = clock()
    for entry in contents.entries:
        sniff(entry.data, entry.name, limits, 1)
    entries = clock()
    package = read_xdm_contents(contents)
    xdm = clock()
    cdas, _ = content._cdas_of(package)
    cda = clock()
    mssante.validate(mssante.read_headers(fields), [package], cdas)
    validate = clock()
    # What the XML steps hold, timed after them (timed before, they would warm them up).
    metadata = contents.get(METADATA)
    assert metadata is not None
    parse_xml(metadata.data, "METADATA.XML", builder="lxml")
    metadata_parse = clock()
    document = package.documents[0].content
    hashlib.sha1(document, usedforsecurity=False).hexdigest()
    sha1 = clock()
    parse_xml(document, "CDA", builder="lxml")
    cda_parse = clock()
    for label, begin, end in (
        ("MIME parse and leaves", started, mime),
        ("transfer decoding (base64)", mime, decoding),
        ("sniff of the PDF and the text", decoding, others),
        ("read_zip (inflate, ISA-L)", others, unzip),
        ("sniff of the zip entries", unzip, entries),
        ("read_xdm_contents (parse, walk, SHA-1)", entries, xdm),
        ("_cdas_of (parse and header walk)", xdm, cda),
        ("MSSanté headers read and validated", cda, validate),
        ("  of which libxml2 parse of METADATA.XML", validate, metadata_parse),
        ("  of which SHA-1 of the CDA", metadata_parse, sha1),
        ("  of which libxml2 parse of the CDA", sha1, cda_parse),
    ):
        times[label].append(end - begin)


def main(count: int, rounds: int, evict: bool) -> None:
    settings = load_settings(tempfile.mkdtemp()).attachments
    messages = [_message() for _ in range(count)]
    headers = [_rule_headers(parse_headers(raw)) for raw in messages]
    junk = bytearray(8 * 1024 * 1024)
    times: dict[str, list[float]] = defaultdict(list)
    whole: list[float] = []
    for round_ in range(rounds + 1):  # the first round warms up, not counted
        for index, (raw, fields) in enumerate(zip(messages, headers, strict=True)):
            if evict:
                junk[:] = bytes(len(junk))
            if round_ and (index + round_) % 2:  # alternately: the steps, analyse itself
                _steps(raw, fields, settings, times)
                continue
            started = time.perf_counter()
            content.analyse(raw, settings, fields)
            if round_:
                whole.append(time.perf_counter() - started)
            else:
                _steps(raw, fields, settings, defaultdict(list))
    print(f"{len(messages[0]):,} bytes a message, {count} messages x {rounds} rounds"
          f"{', caches evicted' if evict else ''}; medians in µs")
    for label, samples in times.items():
        print(f"  {label:<42} {statistics.median(samples) * 1e6:8.1f}")
    step_sum = sum(statistics.median(samples) for label, samples in times.items()
                   if not label.startswith("  "))
    print(f"  {'sum of the steps':<42} {step_sum * 1e6:8.1f}")
    print(f"  {'analyse itself':<42} {statistics.median(whole) * 1e6:8.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--evict", action="store_true")
    arguments = parser.parse_args()
    main(arguments.messages, arguments.rounds, arguments.evict)
