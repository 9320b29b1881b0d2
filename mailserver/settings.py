"""One settings object, loaded once and passed down.

Order (each overrides the previous): the packaged ``conf/mss.toml`` defaults, then
``DATA_DIR/mss.toml``, then ``MSS_<SECTION>_<KEY>`` environment variables. No other
module reads the environment.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

CONFIG_FILE_NAME = "mss.toml"


class SettingsError(Exception):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass(frozen=True)
class ServerSettings:
    hostname: str
    domains: list[str]
    patient_domain: str
    workers: int

    @property
    def worker_count(self) -> int:
        return self.workers if self.workers > 0 else max(1, min(os.cpu_count() or 1, 8))


@dataclass(frozen=True)
class ListenSettings:
    address: str
    port_base: int
    smtp: int
    submission: int
    submissions: int
    imap: int
    imaps: int
    https: int

    def bind_address(self) -> str:
        return "127.0.0.1" if self.port_base else self.address

    def port(self, name: str) -> int:
        standard: int = getattr(self, name)
        return self.port_base + standard


@dataclass(frozen=True)
class DatabaseSettings:
    url: str
    sqlite_synchronous: str


@dataclass(frozen=True)
class StorageSettings:
    encrypt_at_rest: bool
    master_key: str


@dataclass(frozen=True)
class TlsSettings:
    cert: str
    key: str
    ca: str
    ca_key: str


@dataclass(frozen=True)
class SmtpSettings:
    max_message_size: int
    max_recipients: int
    max_connections_per_ip: int
    max_connections: int
    timeout: int
    enable_submission: bool
    enable_relay_port: bool
    inbound: Mapping[str, Any]  # [smtp.inbound]

    @property
    def require_trust_space(self) -> bool:
        """Port 25 only takes mail from the trust space (once a list exists)."""
        return bool(self.inbound["require_trust_space"])


@dataclass(frozen=True)
class ImapSettings:
    enabled: bool
    max_connections_per_ip: int
    max_connections: int
    pre_auth_timeout: int
    autologout: int


@dataclass(frozen=True)
class AuthSettings:
    failure_delay: float
    max_failures: int
    window: int
    patients_on_smtp: bool
    patients_on_imap: bool


@dataclass(frozen=True)
class AttachmentSettings:
    allowed: list[str]
    refused_extensions: list[str]
    max_attachment_size: int
    max_attachments: int
    max_mime_parts: int
    max_mime_depth: int
    zip_max_entries: int
    zip_max_total_size: int
    zip_max_ratio: int
    zip_max_depth: int


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    audience: str
    jwks: str
    identifier_claim: str
    algorithms: list[str]
    leeway: int

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)


@dataclass(frozen=True)
class TrustSettings:
    url: str
    refresh_minutes: int
    anchors_dir: str
    signer: str  # PEM: the list's signing certificate, or the CA(s) it chains to
    require_signature: bool


@dataclass(frozen=True)
class RelaySettings:
    retry_schedule: list[float]
    max_age_hours: float
    delay_warning_hours: float
    poll_seconds: float
    lease_seconds: int
    batch: int
    max_connections: int
    connections_per_destination: int
    timeout: float
    routes: Mapping[str, str]  # [relay.routes]: domain -> "host:port"


@dataclass(frozen=True)
class DkimSettings:
    selector: str
    keys_dir: str
    authserv_id: str
    dns_override_dir: str


@dataclass(frozen=True)
class PkiSettings:
    dir: str
    crl_base_url: str
    client_certificates: bool
    crl_fetch: bool
    crl_timeout: float
    crl_max_size: int
    crl_retry_seconds: int
    login_crl_failure: str
    smime_crl_failure: str


@dataclass(frozen=True)
class SmimeSettings:
    when: str  # "certificate" | "always" | "never"
    sign_certificate: str
    sign_key: str
    encrypt_certificate: str
    encrypt_key: str
    cipher: str  # "aes256-gcm" | "aes256-cbc"


@dataclass(frozen=True)
class LogSettings:
    level: str


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    server: ServerSettings
    listen: ListenSettings
    database: DatabaseSettings
    storage: StorageSettings
    tls: TlsSettings
    smtp: SmtpSettings
    auth: AuthSettings
    oidc: OidcSettings
    log: LogSettings
    imap: ImapSettings
    attachments: AttachmentSettings
    trust: TrustSettings
    relay: RelaySettings
    dkim: DkimSettings
    pki: PkiSettings
    smime: SmimeSettings
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def path(self, relative: str) -> Path:
        """A configured path, relative to the data directory unless absolute."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.data_dir / candidate

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.data_dir / 'mss.sqlite3'}"

    @property
    def local_domains(self) -> frozenset[str]:
        domains = {d.lower() for d in self.server.domains}
        if self.server.patient_domain:
            domains.add(self.server.patient_domain.lower())
        return frozenset(domains)


_SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "listen": ListenSettings,
    "database": DatabaseSettings,
    "storage": StorageSettings,
    "tls": TlsSettings,
    "smtp": SmtpSettings,
    "auth": AuthSettings,
    "oidc": OidcSettings,
    "log": LogSettings,
    "imap": ImapSettings,
    "attachments": AttachmentSettings,
    "trust": TrustSettings,
    "relay": RelaySettings,
    "dkim": DkimSettings,
    "pki": PkiSettings,
    "smime": SmimeSettings,
}


def default_config_text() -> str:
    """The commented default configuration, as shipped."""
    return resources.files("conf").joinpath(CONFIG_FILE_NAME).read_text(encoding="utf-8")


def _merge(base: dict[str, Any], override: Mapping[str, Any], source: str) -> None:
    for section, values in override.items():
        if section not in base:
            raise SettingsError(f"{source}: unknown section [{section}]")
        if not isinstance(values, Mapping):
            raise SettingsError(f"{source}: [{section}] must be a table")
        for key, value in values.items():
            if key not in base[section]:
                raise SettingsError(f"{source}: unknown setting {section}.{key}")
            base[section][key] = _coerce(base[section][key], value, f"{source}: {section}.{key}")


def _coerce(default: Any, value: Any, where: str) -> Any:
    """Check ``value`` has the type of the default; convert environment strings."""
    if isinstance(value, str) and not isinstance(default, str):
        try:
            if isinstance(default, bool):
                lowered = value.strip().lower()
                if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                return lowered in {"true", "1", "yes"}
            if isinstance(default, int):
                return int(value)
            if isinstance(default, float):
                return float(value)
            if isinstance(default, list):
                return [item.strip() for item in value.split(",") if item.strip()]
        except ValueError as error:
            raise SettingsError(
                f"{where}: cannot read {value!r} as {type(default).__name__}"
            ) from error
    if isinstance(default, bool) != isinstance(value, bool):
        raise SettingsError(f"{where}: expected {type(default).__name__}, got {value!r}")
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if not isinstance(value, type(default)):
        raise SettingsError(f"{where}: expected {type(default).__name__}, got {value!r}")
    return value


def _environment_overrides(
    defaults: Mapping[str, Mapping[str, Any]], environ: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for section, values in defaults.items():
        for key in values:
            name = f"MSS_{section}_{key}".upper()
            if name in environ:
                overrides.setdefault(section, {})[key] = environ[name]
    return overrides


def load_settings(
    data_dir: Path | str, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load the settings of the deployment in ``data_dir``."""
    environ = os.environ if environ is None else environ
    data_dir = Path(data_dir).resolve()
    merged: dict[str, Any] = {
        section: dict(values)
        for section, values in tomllib.loads(default_config_text()).items()
    }
    config_path = data_dir / CONFIG_FILE_NAME
    if config_path.exists():
        try:
            local = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise SettingsError(f"{config_path}: {error}") from error
        _merge(merged, local, str(config_path))
    _merge(merged, _environment_overrides(merged, environ), "environment")
    built: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        names = {f.name for f in fields(cls)}
        built[section] = cls(**{k: v for k, v in merged[section].items() if k in names})
    settings = Settings(data_dir=data_dir, raw=merged, **built)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    if settings.database.sqlite_synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
        raise SettingsError("database.sqlite_synchronous must be FULL, NORMAL or EXTRA")
    if settings.smtp.max_message_size <= 0 or settings.smtp.max_recipients <= 0:
        raise SettingsError("smtp.max_message_size and smtp.max_recipients must be positive")
    if not 0 <= settings.server.workers <= 64:
        raise SettingsError("server.workers must be between 0 (one per core) and 64")
    if settings.imap.autologout < 1800:
        raise SettingsError("imap.autologout must be at least 1800 seconds (RFC 9051 §5.4)")
    attachments = settings.attachments
    if min(attachments.max_attachment_size, attachments.max_attachments,
           attachments.max_mime_parts, attachments.max_mime_depth, attachments.zip_max_entries,
           attachments.zip_max_total_size, attachments.zip_max_ratio) <= 0:
        raise SettingsError("attachments.* limits must be positive")
    if settings.oidc.enabled and not (settings.oidc.audience and settings.oidc.jwks):
        raise SettingsError("oidc.issuer is set: oidc.audience and oidc.jwks are needed too")
    if settings.smime.when not in {"certificate", "always", "never"}:
        raise SettingsError('smime.when must be "certificate", "always" or "never"')
    if settings.smime.cipher not in {"aes256-gcm", "aes256-cbc"}:
        raise SettingsError('smime.cipher must be "aes256-gcm" or "aes256-cbc"')
    if not 0 <= settings.listen.port_base <= 60000:
        raise SettingsError("listen.port_base must be between 0 and 60000")
    if not isinstance(settings.smtp.inbound.get("require_trust_space"), bool):
        raise SettingsError("smtp.inbound.require_trust_space must be true or false")
    try:
        schedule = [float(s) for s in settings.relay.retry_schedule]
    except (TypeError, ValueError) as error:
        raise SettingsError("relay.retry_schedule must be a list of seconds") from error
    if not schedule or min(schedule) <= 0:
        raise SettingsError("relay.retry_schedule must list positive numbers of seconds")
    for name in ("login_crl_failure", "smime_crl_failure"):
        if getattr(settings.pki, name) not in ("hard", "soft"):
            raise SettingsError(f"pki.{name} must be \"hard\" or \"soft\"")
    if settings.pki.crl_timeout <= 0 or settings.pki.crl_max_size <= 0:
        raise SettingsError("pki.crl_timeout and pki.crl_max_size must be positive")
    base = settings.pki.crl_base_url
    if base and not base.startswith(("http://", "https://", "file://")):
        raise SettingsError("pki.crl_base_url must start with http://, https:// or file://")
    for domain, target in settings.relay.routes.items():
        if not isinstance(target, str) or not target.rpartition(":")[2].isdigit():
            raise SettingsError(f"relay.routes.{domain} must be \"HOST:PORT\", got {target!r}")
