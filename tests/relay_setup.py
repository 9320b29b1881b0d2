"""Two operators on one machine: deployments A and B, two domains, two local
CAs, each trusting the other's CA and listing the other in its white list with
the DN of its operator certificate, each routing the other's domain to its
loopback port 25. Set up through the `mss` commands an operator would use."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509

from cli.main import main
from mailserver.deployment import init_deployment
from mailserver.dkim import keys as dkim_keys
from mailserver.settings import Settings, load_settings
from tests.conftest import ServerThread, free_port_base

DOMAIN_A = "sante-a.example"
DOMAIN_B = "sante-b.example"
PASSWORD = "correct horse battery"

WHITELIST = """<?xml version="1.0" encoding="UTF-8"?>
<ListeBlanche xmlns="https://listeblanche.mssante.fr/schema" DateDeGeneration="2026-11-24T08:00:00">
{domains}
</ListeBlanche>
"""
DOMAINE = """  <Domaine>
    <Nom>{name}</Nom>
    <Description>Opérateur {name}</Description>
    <DNCertificatOperateur>{dn}</DNCertificatOperateur>
    <ResponsableContact>dpo@{name}</ResponsableContact>
    <SupportContact>support@{name}</SupportContact>
    <DateMAJ>2026-11-01</DateMAJ>
  </Domaine>"""


def mss(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), *args])
    assert result.exit_code == 0, result.output
    return result.output


def operator_dn(settings: Settings) -> str:
    pem = settings.path(settings.tls.cert).read_bytes()
    return x509.load_pem_x509_certificate(pem).subject.rfc4514_string()


def whitelist(entries: dict[str, str]) -> str:
    return WHITELIST.format(domains="\n".join(
        DOMAINE.format(name=name, dn=dn) for name, dn in entries.items()
    ))


def tune(settings: Settings, **values: str) -> Settings:
    """Edit relay settings in the deployment's mss.toml (processes read the file)."""
    path = settings.data_dir / "mss.toml"
    text = path.read_text()
    for key, value in values.items():
        text, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
        assert count == 1, key
    path.write_text(text)
    return load_settings(settings.data_dir)


def new_deployment(root: Path, domain: str, database_url: str = "") -> Settings:
    settings = asyncio.run(init_deployment(
        root / domain, domains=[domain], patient_domain=f"patients.{domain}",
        port_base=free_port_base(), hostname=f"mx.{domain}", database_url=database_url,
    ))
    # Fast retries for tests: half a second between attempts, quick polling.
    return tune(settings, retry_schedule="[0.5]", poll_seconds="0.1")


@dataclass
class Operators:
    a: Settings
    b: Settings

    def reload(self) -> None:
        self.a = load_settings(self.a.data_dir)
        self.b = load_settings(self.b.data_dir)


def make_operators(root: Path, database_url_a: str = "") -> Operators:
    a = new_deployment(root, DOMAIN_A, database_url_a)
    b = new_deployment(root, DOMAIN_B)
    listed = {DOMAIN_A: operator_dn(a), DOMAIN_B: operator_dn(b)}
    list_file = root / "liste-blanche.xml"
    list_file.write_text(whitelist(listed), encoding="utf-8")
    for here, there in ((a, b), (b, a)):
        mss(here, "trust", "import", str(list_file))
        mss(here, "trust", "import", str(there.path(there.tls.ca)))  # the peer's CA
        mss(here, "route", "add", there.server.domains[0],
            f"127.0.0.1:{there.listen.port('smtp')}")
    # A signs with Ed25519; B finds A's public key in its DNS override directory.
    mss(a, "dkim", "keygen", DOMAIN_A, "--algorithm", "ed25519")
    override = b.path(b.dkim.dns_override_dir)
    override.mkdir(parents=True, exist_ok=True)
    (override / f"{a.dkim.selector}._domainkey.{DOMAIN_A}").write_text(
        dkim_keys.public_record(a.path(a.dkim.keys_dir), DOMAIN_A)
    )
    operators = Operators(a, b)
    operators.reload()
    return operators


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")


def queue_size(server: ServerThread) -> int:
    return len(server.call(server.app.queue.entries()))


def enable_smime(operators: Operators, key_type: str = "rsa2048") -> None:
    """Each operator gets a local PKI and its S/MIME operator certificates; each trusts
    the other's root for S/MIME and binds the other's encryption certificate to the
    other's domain in its directory (Direct: domain-bound certificate)."""
    for settings in (operators.a, operators.b):
        mss(settings, "pki", "init", "--key-type", "ec256")
        mss(settings, "pki", "operator", "--key-type", key_type)
    for here, there in ((operators.a, operators.b), (operators.b, operators.a)):
        mss(here, "pki", "trust", "add", str(there.data_dir / "pki" / "ca" / "root" / "ca.pem"))
        mss(here, "directory", "cert", "add", str(there.path(there.smime.encrypt_certificate)),
            "--domain", there.server.domains[0], "--usage", "encrypt")


@contextlib.contextmanager
def running_pair(operators: Operators, b_mailboxes: tuple[str, ...] = ()
                 ) -> Iterator[tuple[ServerThread, ServerThread]]:
    """Both operators serving, with Alice at A and Bruno (and ``b_mailboxes``) at B."""
    a = ServerThread(operators.a).start()
    b = ServerThread(operators.b).start()
    a.add_mailbox(f"alice@{DOMAIN_A}", PASSWORD)
    for address in (f"bruno@{DOMAIN_B}", *b_mailboxes):
        b.add_mailbox(address, PASSWORD)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()
