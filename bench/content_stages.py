"""Where the content analysis of a structured message spends its time (issue 5): the
steps of ``health.content.analyse`` timed one after the other on the message
bench/policies.py sends (an IHE XDM zip holding METADATA.XML and a CDA, beside a
20 kB PDF), each message new, as a server meets them.

    python bench/content_stages.py               # 300 messages, 3 rounds
    python bench/content_stages.py --evict       # 8 MB of other memory traffic before
                                                 # each message: caches as cold as in
                                                 # the full bench
    python bench/content_stages.py --pdf-size N  # a PDF of N bytes (in the zip's CDA
                                                 # and beside it)
    python bench/content_stages.py --sizes       # analyse and its C floor for PDFs of
                                                 # 0 B to 500 kB, one table

Prints the median of each step in microseconds and the median of ``analyse`` itself
(the steps' sum is close to it, not equal: timers and glue), then the floor: the C
libraries' own calls on the same bytes (pybase64, ISA-L inflate and CRC-32, SHA-1,
libxml2's parses, Hyperscan's scans), what no Python around them could go under,
and the ratio of ``analyse`` to it. The analysis grows with the message; the floor
says how much of it is the libraries' and how much is ours.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import os
import statistics
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from email.policy import SMTP
from pathlib import Path

import pybase64
from isal import isal_zlib
from lxml import etree

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from directory.ins import nir_control_key  # noqa: E402
from mailserver.health import build, content, mssante  # noqa: E402
from mailserver.health.attachments import _SCRIPTS, _text, sniff  # noqa: E402
from mailserver.health.safezip import _LOCAL, _LOCAL_HEADER, is_zip, read_zip  # noqa: E402
from mailserver.health.xdm import METADATA, read_xdm_contents  # noqa: E402
from mailserver.health.xmlsafe import _tree_parser, parse_xml  # noqa: E402
from mailserver.mime.parse import ParsedMessage  # noqa: E402
from mailserver.pipeline import _rule_headers, parse_headers  # noqa: E402
from mailserver.settings import AttachmentSettings, load_settings  # noqa: E402


def _message(pdf_size: int = 20_000) -> bytes:
    first13 = "1800175000000"
    patient = build.Patient(f"{first13}{nir_control_key(first13):02d}", "PATIENT0", "Bench",
                            dt.date(1980, 1, 1))
    message = build.structured_message(
        sender="dr.bench@hopital.example", recipient="dr.other@hopital.example",
        patient=patient, info=build.DocumentInfo(), pdf=b"%PDF-1.7\n" + os.urandom(pdf_size))
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


def _floor(raw: bytes, settings: AttachmentSettings, times: dict[str, list[float]]) -> None:
    """The C libraries' own calls of the analysis on this message's bytes, timed
    together: base64 decoding, inflate and CRC-32 of each zip entry, SHA-1 of each
    document, libxml2's parses of METADATA.XML and of the CDA, Hyperscan's scan of
    each text the analysis scans. The inputs are prepared first, untimed."""
    message = ParsedMessage.from_bytes(raw, max_parts=settings.max_mime_parts + 1)
    leaves, _ = content._leaves(message, settings)
    bodies = [part.body_bytes for part in leaves if part.transfer_encoding == "base64"]
    decoded = [content._content(part) for part in leaves]
    archive = next(data for data in decoded if is_zip(data))
    streams = []
    with zipfile.ZipFile(io.BytesIO(archive)) as listing:
        for info in listing.infolist():
            names, extra = _LOCAL.unpack_from(archive, info.header_offset)[2:]
            start = info.header_offset + _LOCAL_HEADER + names + extra
            streams.append((archive[start:start + info.compress_size], info.file_size))
    contents = read_zip(archive, content.scan_limits(settings).zip)
    package = read_xdm_contents(contents)
    documents = [entry.content for entry in package.documents]
    metadata = contents.get(METADATA)
    assert metadata is not None
    scanned = [data for data in (*decoded, *(e.data for e in contents.entries))
               if not is_zip(data) and _text(data)]
    parser = _tree_parser()
    clock = time.perf_counter
    started = clock()
    for body in bodies:
        pybase64.b64decode(body, validate=False)
    for stream, size in streams:
        isal_zlib.crc32(isal_zlib.decompress(stream, -15, size))
    for document in documents:
        hashlib.sha1(document, usedforsecurity=False).hexdigest()
    etree.fromstring(metadata.data, parser)
    for document in documents:
        etree.fromstring(document, parser)
    for data in scanned:
        _SCRIPTS.found_in(data)
    times["floor"].append(clock() - started)


def measure(count: int, rounds: int, evict: bool, pdf_size: int
            ) -> tuple[int, dict[str, list[float]], list[float]]:
    """Message size, the steps' samples (and the floor's), analyse's samples."""
    settings = load_settings(tempfile.mkdtemp()).attachments
    messages = [_message(pdf_size) for _ in range(count)]
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
                if evict:
                    junk[:] = bytes(len(junk))
                _floor(raw, settings, times)
                continue
            started = time.perf_counter()
            facts = content.analyse(raw, settings, fields)
            if round_:
                whole.append(time.perf_counter() - started)
            else:
                assert facts.structured is not None and not facts.structured.problems, facts
                _steps(raw, fields, settings, defaultdict(list))
                _floor(raw, settings, defaultdict(list))
    return len(messages[0]), times, whole


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def main(count: int, rounds: int, evict: bool, pdf_size: int) -> None:
    size, times, whole = measure(count, rounds, evict, pdf_size)
    floor = times.pop("floor")
    print(f"{size:,} bytes a message, {count} messages x {rounds} rounds"
          f"{', caches evicted' if evict else ''}; medians in µs")
    for label, samples in times.items():
        print(f"  {label:<42} {_median_us(samples):8.1f}")
    step_sum = sum(_median_us(samples) for label, samples in times.items()
                   if not label.startswith("  "))
    print(f"  {'sum of the steps':<42} {step_sum:8.1f}")
    print(f"  {'analyse itself':<42} {_median_us(whole):8.1f}")
    print(f"  {'C libraries alone on the same bytes':<42} {_median_us(floor):8.1f}")
    ratio = statistics.median(whole) / statistics.median(floor)
    print(f"  {'analyse / C libraries':<42} {ratio:7.2f}x")


SIZES = (0, 20_000, 100_000, 500_000)


def table(count: int, rounds: int, evict: bool) -> None:
    """analyse and its floor for PDFs of each of SIZES."""
    print(f"{'PDF bytes':>10} {'message':>10} {'analyse µs':>11} {'C floor µs':>11} "
          f"{'ratio':>6} {'MB/s':>6}{'  (caches evicted)' if evict else ''}")
    for pdf_size in SIZES:
        messages = count if pdf_size <= 20_000 else max(30, count * 20_000 // pdf_size)
        size, times, whole = measure(messages, rounds, evict, pdf_size)
        took, floor = statistics.median(whole), statistics.median(times["floor"])
        print(f"{pdf_size:>10,} {size:>10,} {took * 1e6:>11.1f} {floor * 1e6:>11.1f} "
              f"{took / floor:>5.2f}x {size / took / 1e6:>6.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--evict", action="store_true")
    parser.add_argument("--pdf-size", type=int, default=20_000)
    parser.add_argument("--sizes", action="store_true")
    arguments = parser.parse_args()
    if arguments.sizes:
        table(arguments.messages, arguments.rounds, arguments.evict)
    else:
        main(arguments.messages, arguments.rounds, arguments.evict, arguments.pdf_size)
