"""A real local PKI for the S/MIME tests: people with signing and encryption certificates,
RSA and EC, made with the same code as ``mss pki``; and an openssl runner."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from mailserver.pki.local_pki import Issued, LocalPki
from mailserver.smime import Identity, TrustStore

ORG = "hopital.example"
ALICE = "alice@hopital.example"  # RSA-2048 signing + encryption
BOB = "bob@hopital.example"  # RSA-2048 signing + encryption
CAROL = "carol@hopital.example"  # ECDSA / ECDH P-256


@dataclass
class Person:
    address: str
    sign: Issued
    encrypt: Issued

    @property
    def signer(self) -> Identity:
        return Identity(self.sign.certificate, self.sign.key)

    @property
    def decrypter(self) -> Identity:
        return Identity(self.encrypt.certificate, self.encrypt.key)


@dataclass
class Pki:
    store: LocalPki
    people: dict[str, Person]

    @property
    def chain(self) -> list[x509.Certificate]:
        return [self.store.authority("people").certificate]

    def trust(self) -> TrustStore:
        return self.store.trust_store()

    @property
    def root_pem(self) -> Path:
        return self.store.ca_dir("root") / "ca.pem"

    @property
    def chain_pem(self) -> Path:
        path = self.store.dir / "chain.pem"
        if not path.exists():
            path.write_bytes(self.root_pem.read_bytes()
                             + (self.store.ca_dir("people") / "ca.pem").read_bytes())
        return path


def make_pki(folder: Path, organisation: str = ORG) -> Pki:
    store = LocalPki(folder)
    store.init(organisation, "ec256")
    people = {}
    for address, key_type in ((ALICE, "rsa2048"), (BOB, "rsa2048"), (CAROL, "ec256")):
        people[address] = Person(
            address,
            store.issue(address, "sign", organisation=organisation, key_type=key_type),
            store.issue(address, "encrypt", organisation=organisation, key_type=key_type),
        )
    return Pki(store, people)


def message(sender: str = ALICE, recipient: str = BOB, body: str = "Compte rendu: RAS.",
            message_id: str = "<cr-1@hopital.example>") -> bytes:
    return (
        f"From: {sender}\r\nTo: {recipient}\r\nSubject: Compte rendu\r\n"
        f"Date: Tue, 24 Nov 2026 10:00:00 +0100\r\nMessage-ID: {message_id}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def openssl(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], input=input, capture_output=True, timeout=60)
