"""Benchmark: parse + ENVELOPE + BODYSTRUCTURE of 10,000 realistic messages.

    /work/main/.venv/bin/python bench/mime_parse.py [--count N] [--seed S]

Mix: 50 % plain text (4-12 KiB), 30 % multipart/alternative text+HTML (8-24 KiB), 20 %
multipart/mixed with a base64 attachment (PDF, zip or CDA XML; 20-50 KiB), every message with
a realistic header block (Received chain, DKIM, addresses with RFC 2047 names).
Prints messages/s for the whole FETCH (ENVELOPE BODYSTRUCTURE) work and for each step.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailserver.mime.fetch import body_structure, envelope
from mailserver.mime.parse import ParsedMessage

WORDS = ("patient consultation résultat analyse ordonnance compte rendu hospitalisation "
         "docteur service cardiologie suivi traitement examen biologie radiologie").split()


def text_block(rng: random.Random, size: int) -> bytes:
    lines: list[str] = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12)))
        lines.append(line)
        total += len(line) + 2
    return "\r\n".join(lines).encode()


def headers(rng: random.Random, n: int, ctype: str) -> bytes:
    hops = "".join(
        f"Received: from mx{h}.sante.example (mx{h}.sante.example [192.0.2.{h}])\r\n"
        f"\tby mail.hopital.example with ESMTPS id {rng.getrandbits(48):x};\r\n"
        f"\tTue, 5 Mar 2024 09:1{h}:00 +0100\r\n"
        for h in range(rng.randint(2, 5))
    )
    return (
        hops
        + "DKIM-Signature: v=1; a=rsa-sha256; d=hopital.example; s=s1;\r\n"
        f"\tbh={base64.b64encode(rng.randbytes(32)).decode()};\r\n"
        f"\tb={base64.b64encode(rng.randbytes(180)).decode()}\r\n"
        f"Date: Tue, 05 Mar 2024 09:{n % 60:02d}:00 +0100\r\n"
        "From: =?utf-8?q?Dr_Jos=C3=A9?= Martin <jose.martin@hopital.mssante.fr>\r\n"
        f'To: "Dupont, Anne" <anne.dupont{n}@medecin.mssante.fr>, secretariat@cabinet.example\r\n'
        "Cc: Service Cardiologie <cardio@hopital.mssante.fr>\r\n"
        f"Subject: =?utf-8?q?Re=3A_Compte_rendu_n=C2=B0{n}?=\r\n"
        f"Message-ID: <{n}.{rng.getrandbits(40):x}@hopital.mssante.fr>\r\n"
        f"In-Reply-To: <{n - 1}@hopital.mssante.fr>\r\n"
        f"References: <{n - 2}@hopital.mssante.fr> <{n - 1}@hopital.mssante.fr>\r\n"
        "MIME-Version: 1.0\r\n"
        f"{ctype}\r\n"
        "\r\n"
    ).encode()


def b64(data: bytes) -> bytes:
    raw = base64.b64encode(data)
    return b"\r\n".join(raw[i : i + 76] for i in range(0, len(raw), 76))


def boundary(rng: random.Random, n: int) -> str:
    """A unique boundary per message, as mailers write them."""
    return f"----=_Part_{n}_{rng.getrandbits(31)}.{rng.getrandbits(40)}"


def make_message(rng: random.Random, n: int) -> bytes:
    kind = rng.random()
    if kind < 0.5:
        ctype = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit"
        return headers(rng, n, ctype) + text_block(rng, rng.randint(4, 12) * 1024)
    if kind < 0.8:
        text = text_block(rng, rng.randint(4, 12) * 1024)
        html = b"<html><body><p>" + text.replace(b"\r\n", b"</p>\r\n<p>") + b"</p></body></html>"
        alt = boundary(rng, n).encode()
        body = (
            b"--" + alt + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" + text + b"\r\n--" + alt
            + b"\r\nContent-Type: text/html; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" + html + b"\r\n--" + alt + b"--\r\n"
        )
        ctype = f'Content-Type: multipart/alternative; boundary="{alt.decode()}"'
        return headers(rng, n, ctype) + body
    name, ctype = rng.choice([("CR.pdf", "application/pdf"), ("IHE_XDM.ZIP", "application/zip"),
                              ("CDA.xml", "text/xml; charset=utf-8")])
    attachment = b64(rng.randbytes(rng.randint(15, 36) * 1024))
    mix = boundary(rng, n)
    body = (
        f"--{mix}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n".encode()
        + text_block(rng, 2048)
        + f'\r\n--{mix}\r\nContent-Type: {ctype}; name="{name}"\r\n'
          f'Content-Disposition: attachment; filename="{name}"\r\n'
          "Content-Transfer-Encoding: base64\r\n\r\n".encode()
        + attachment
        + f"\r\n--{mix}--\r\n".encode()
    )
    return headers(rng, n, f'Content-Type: multipart/mixed; boundary="{mix}"') + body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    messages = [make_message(rng, n) for n in range(args.count)]
    total_bytes = sum(len(m) for m in messages)
    print(f"{len(messages)} messages, {total_bytes / len(messages) / 1024:.1f} KiB average")

    n = len(messages)
    parsed = [ParsedMessage.from_bytes(m) for m in messages]
    steps = {
        "parse only": lambda: [ParsedMessage.from_bytes(m) for m in messages],
        "ENVELOPE only": lambda: [envelope(msg) for msg in parsed],
        "BODYSTRUCTURE only": lambda: [body_structure(msg, extended=True) for msg in parsed],
        "parse+ENV+BODYSTRUCT": lambda: [
            (envelope(msg), body_structure(msg, extended=True))
            for msg in map(ParsedMessage.from_bytes, messages)
        ],
    }
    # best of --rounds, wall clock and CPU time of this process (the machine may be shared)
    for label, step in steps.items():
        wall = cpu = float("inf")
        for _ in range(args.rounds):
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            wall = min(wall, time.perf_counter() - w0)
            cpu = min(cpu, time.process_time() - c0)
        print(f"{label:22s} {n / wall:8.0f} msg/s wall  {n / cpu:8.0f} msg/s CPU"
              f"  (FETCH 1:1000 ≈ {wall / n * 1_000_000:.0f} ms wall)")
    print(f"({total_bytes / 2**20:.0f} MiB in all; load average {os.getloadavg()[0]:.1f}"
          f" on {os.cpu_count()} CPUs)")

if __name__ == "__main__":
    main()
