"""S/MIME throughput on one core, next to the physical limit measured by openssl.

    .venv/bin/python bench/smime.py [--seconds 2] [--rounds 3]

Sign+encrypt (Direct-style ``protect``: wrap, sign, encrypt to the recipient) and
decrypt+verify (``unprotect``: decrypt, verify signature and chain with CRLs, unwrap) of
4 KiB messages with RSA-2048 keys. Like with like: each message costs exactly one RSA-2048
private-key operation and one public-key operation each way (out: sign + key transport to
one recipient; in: key transport decryption + signature verification).

    ratio = messages/s ÷ (openssl speed rsa2048 private-key ops/s, "sign/s")

the limit being the private-key operation alone; the target is ratio >= 0.7. The bound
that also counts the public operation, 1 / (1/sign/s + 1/verify/s), is printed beside it.
Rates are per second of process CPU time, as ``openssl speed`` counts them, so that
other work on the machine does not skew them (a loaded machine still understates them:
caches are shared).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from mailserver.pki.local_pki import LocalPki
from mailserver.smime import Identity, protect, unprotect

ALICE, BOB = "alice@hopital.example", "bob@hopital.example"


def openssl_rsa2048_per_second(seconds: int) -> tuple[float, float]:
    """(private-key ops/s, public-key ops/s) as ``openssl speed rsa2048`` measures them."""
    result = subprocess.run(["openssl", "speed", "-seconds", str(seconds), "rsa2048"],
                            capture_output=True, text=True, check=True, timeout=seconds * 4 + 60)
    match = re.search(r"^rsa\s+2048 bits\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)",
                      result.stdout, re.M)
    if match is None:
        raise SystemExit(f"cannot read openssl speed output:\n{result.stdout}")
    return float(match.group(1)), float(match.group(2))


MESSAGES = 4096  # more than the largest cache (1,024 entries), so cycling always misses


def message_number(n: int) -> bytes:
    """A 4 KiB report, its own headers and body (a server never sees one twice)."""
    body = (f"Compte rendu de consultation n° {n}. " * 200)[:4096 - 260]
    return (f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: CR {n}\r\n"
            f"Date: Fri, 04 Dec 2026 10:{n // 60 % 60:02d}:{n % 60:02d} +0100\r\n"
            f"Message-ID: <cr-{n}@hopital.example>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


def rate(function: Callable[[], object], seconds: float) -> float:
    function()  # warm caches (certificate paths, CRL signatures)
    count = 0
    start = time.process_time()
    deadline = start + seconds
    while time.process_time() < deadline:
        function()
        count += 1
    return count / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=2, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measurements of each rate, interleaved; the best counts")
    arguments = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    with tempfile.TemporaryDirectory() as folder:
        store = LocalPki(Path(folder) / "pki")
        store.init("hopital.example", "rsa3072")
        issued = {(who, usage): store.issue(who, usage, organisation="hopital.example",
                                            key_type="rsa2048")
                  for who in (ALICE, BOB) for usage in ("sign", "encrypt")}
        trust = store.trust_store()
        chain = store.chain_of("people")
        signer = Identity(issued[ALICE, "sign"].certificate, issued[ALICE, "sign"].key)
        reader = Identity(issued[BOB, "encrypt"].certificate, issued[BOB, "encrypt"].key)
        recipients = [issued[BOB, "encrypt"].certificate]  # one key transport: one public op
        # Distinct messages, more than any cache of the code holds, cycled: a server
        # never sees the same message twice, so no per-message work may be cached.
        messages = [message_number(n) for n in range(MESSAGES)]
        message = messages[0]
        protected = [protect(m, signer, recipients, chain=chain) for m in messages]
        for sealed in protected[:3]:
            check = unprotect(sealed, [reader], trust, authserv_id="bench")
            assert check.verify.ok and check.decrypt.ok, check.verify.reason
        to_send, to_read = itertools.cycle(messages), itertools.cycle(protected)

        key = issued[ALICE, "sign"].key
        limit = public = in_process = outgoing = incoming = 0.0
        # Each side's best round: a load spike on a shared machine during one
        # measurement would otherwise decide the ratio.
        for _ in range(arguments.rounds):
            openssl_private, openssl_public = openssl_rsa2048_per_second(arguments.seconds)
            limit, public = max(limit, openssl_private), max(public, openssl_public)
            in_process = max(in_process, rate(
                lambda: key.sign(b"x" * 32, padding.PKCS1v15(), hashes.SHA256()),
                arguments.seconds))
            outgoing = max(outgoing, rate(
                lambda: protect(next(to_send), signer, recipients, chain=chain),
                arguments.seconds))
            incoming = max(incoming, rate(
                lambda: unprotect(next(to_read), [reader], trust, authserv_id="bench"),
                arguments.seconds))
    print(f"message size                          {len(message)} bytes, RSA-2048, one core, "
          f"best of {arguments.rounds} rounds")
    both = 1 / (1 / limit + 1 / public)
    print(f"openssl speed rsa2048 private ops/s   {limit:8.0f}   (the limit)")
    print(f"openssl speed rsa2048 public ops/s    {public:8.0f}")
    print(f"1 private + 1 public op per message   {both:8.0f}   {both / limit:.2f}x"
          "   (the bound with the public op counted)")
    print(f"cryptography RSA-2048 sign/s          {in_process:8.0f}   {in_process / limit:.2f}x"
          "   (the same operation through the Python binding)")
    print(f"sign+encrypt   messages/s             {outgoing:8.0f}   {outgoing / limit:.2f}x")
    print(f"decrypt+verify messages/s             {incoming:8.0f}   {incoming / limit:.2f}x")
    print("target                                    0.70x   "
          "(ratio = messages/s / openssl private ops/s)")


if __name__ == "__main__":
    main()
