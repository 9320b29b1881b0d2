"""Create a deployment: configuration, database, local CA and server certificate."""

from __future__ import annotations

import re
from pathlib import Path

from mailserver.pki.local_ca import (
    create_ca,
    issue_server_certificate,
    write_certificate,
    write_private_key,
)
from mailserver.settings import CONFIG_FILE_NAME, Settings, default_config_text, load_settings
from mailserver.store.crypto import create_master_key
from mailserver.store.database import create_engine
from mailserver.store.migrate import upgrade

_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class DeploymentError(Exception):
    pass


def check_domain(domain: str) -> str:
    domain = domain.strip().lower().rstrip(".")
    if not _DOMAIN.match(domain):
        raise DeploymentError(f"{domain!r} is not a domain name (e.g. hopital.example)")
    return domain


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(
    *, domains: list[str], patient_domain: str, hostname: str, port_base: int,
    database_url: str = "",
) -> str:
    """The commented default file with this deployment's values filled in."""
    text = default_config_text()
    replacements = {
        r'^hostname = .*$': f"hostname = {_toml_string(hostname)}",
        r'^domains = .*$': "domains = [" + ", ".join(_toml_string(d) for d in domains) + "]",
        r'^patient_domain = .*$': f"patient_domain = {_toml_string(patient_domain)}",
        r'^port_base = .*$': f"port_base = {port_base}",
        r'^url = .*$': f"url = {_toml_string(database_url)}",
    }
    for pattern, line in replacements.items():
        text, count = re.subn(pattern, line.replace("\\", "\\\\"), text, count=1, flags=re.M)
        if count != 1:
            raise DeploymentError(f"default configuration lacks {pattern}")
    return text


async def init_deployment(
    data_dir: Path,
    *,
    domains: list[str],
    patient_domain: str,
    port_base: int = 0,
    hostname: str | None = None,
    database_url: str = "",
) -> Settings:
    domains = [check_domain(d) for d in domains]
    patient_domain = check_domain(patient_domain)
    if patient_domain in domains:
        raise DeploymentError("the patient domain must differ from the professional domains")
    hostname = hostname or (f"mail.{domains[0]}" if not port_base else "localhost")
    config_path = data_dir / CONFIG_FILE_NAME
    if config_path.exists():
        raise DeploymentError(f"{config_path} already exists; this deployment is initialised")
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    config_path.write_text(
        render_config(domains=domains, patient_domain=patient_domain, hostname=hostname,
                      port_base=port_base, database_url=database_url),
        encoding="utf-8",
    )
    settings = load_settings(data_dir)
    ca_key, ca_cert = create_ca(f"MSS local CA ({domains[0]})", domains[0])
    write_certificate(settings.path(settings.tls.ca), ca_cert)
    write_private_key(settings.path(settings.tls.ca_key), ca_key)
    names = [hostname, *domains, "localhost", "127.0.0.1"]
    key, cert = issue_server_certificate(ca_key, ca_cert, names, domains[0])
    write_certificate(settings.path(settings.tls.cert), cert)
    write_private_key(settings.path(settings.tls.key), key)
    create_master_key(settings.path(settings.storage.master_key))
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    return settings
