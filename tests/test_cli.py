"""The administrator's path: mss init, mailbox and patient commands. Errors are
one clear line, never a traceback."""

from __future__ import annotations

import smtplib
import ssl
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509

from cli.main import main
from directory.ins import InvalidINS, nir_control_key, validate_ins
from mailserver.settings import load_settings
from tests.conftest import free_port_base, start_server


def mss(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=stdin, catch_exceptions=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "dep"
    result = mss("init", "--data-dir", str(directory), "--domain", "hopital.example",
                 "--patient-domain", "patient.example", "--port-base", str(free_port_base()))
    assert result.exit_code == 0, result.output
    return directory


def test_init_writes_commented_config_database_and_real_certificates(data_dir: Path) -> None:
    config_text = (data_dir / "mss.toml").read_text()
    assert config_text.count("#") > 20  # commented
    config = tomllib.loads(config_text)
    assert config["server"]["domains"] == ["hopital.example"]
    assert config["server"]["patient_domain"] == "patient.example"
    assert config["listen"]["port_base"] > 0
    assert (data_dir / "mss.sqlite3").exists()
    cert = x509.load_pem_x509_certificate((data_dir / "tls/server.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert "hopital.example" in names.get_values_for_type(x509.DNSName)
    assert (data_dir / "tls/server.key").stat().st_mode & 0o077 == 0  # owner only
    assert (data_dir / "tls/ca.key").stat().st_mode & 0o077 == 0
    again = mss("init", "--data-dir", str(data_dir), "--domain", "hopital.example",
                "--patient-domain", "patient.example")
    assert again.exit_code == 1 and "already exists" in again.output


def test_mailbox_lifecycle(data_dir: Path, tmp_path: Path) -> None:
    d = ["--data-dir", str(data_dir)]
    pw = tmp_path / "pw"
    pw.write_text("first-password\n")
    assert mss(*d, "mailbox", "add", "Jean.Dupont@hopital.example", "--type", "per",
               "--password-file", str(pw)).exit_code == 0
    duplicate = mss(*d, "mailbox", "add", "jean.dupont@hopital.example", "--type", "PER",
                    "--password", "another-password")
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    foreign = mss(*d, "mailbox", "add", "x@elsewhere.example", "--type", "ORG",
                  "--password", "another-password")
    assert foreign.exit_code == 1 and "not a professional domain" in foreign.output
    short = mss(*d, "mailbox", "add", "y@hopital.example", "--type", "ORG", "--password", "short")
    assert short.exit_code == 1 and "at least 8" in short.output
    prompted = mss(*d, "mailbox", "add", "z@hopital.example", "--type", "APP",
                   stdin="prompted-pass\nprompted-pass\n")
    assert prompted.exit_code == 0, prompted.output
    listing = mss(*d, "mailbox", "list").output
    assert "jean.dupont@hopital.example\tPER\tactive" in listing
    assert "z@hopital.example\tAPP\tactive" in listing
    assert mss(*d, "mailbox", "passwd", "jean.dupont@hopital.example",
               "--password", "second-password").exit_code == 0
    assert mss(*d, "mailbox", "disable", "z@hopital.example").exit_code == 0
    assert "z@hopital.example\tAPP\tdisabled" in mss(*d, "mailbox", "list").output
    missing = mss(*d, "mailbox", "disable", "nobody@hopital.example")
    assert missing.exit_code == 1 and "no mailbox" in missing.output

    # The new password works over real SMTP submission, the old one does not.
    server = start_server(load_settings(data_dir))
    try:
        context = ssl.create_default_context(cafile=data_dir / "tls/ca.pem")
        with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as client:
            client.starttls(context=context)
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("jean.dupont@hopital.example", "first-password")
            client.login("Jean.Dupont@hopital.example", "second-password")
    finally:
        server.stop()


def test_patient_add_checks_the_ins(data_dir: Path) -> None:
    d = ["--data-dir", str(data_dir)]
    first13 = "1850575112034"
    ins = f"{first13}{nir_control_key(first13):02d}"
    common = ["--family", "MARTIN", "--given", "Claire", "--birthdate", "1985-05-12",
              "--password", "patient-password"]
    wrong_key = f"{first13}{(nir_control_key(first13) + 1) % 97:02d}"
    result = mss(*d, "patient", "add", "--ins", wrong_key, *common)
    assert result.exit_code == 1 and "wrong control key" in result.output
    assert "Traceback" not in result.output
    result = mss(*d, "patient", "add", "--ins", ins[:-1], *common)
    assert result.exit_code == 1 and "15 characters" in result.output
    result = mss(*d, "patient", "add", "--ins", ins, *common)
    assert result.exit_code == 0, result.output
    assert f"{ins}@patient.example" in result.output
    again = mss(*d, "patient", "add", "--ins", ins, *common)
    assert again.exit_code == 1 and "already has a mailbox" in again.output
    bad_date = mss(*d, "patient", "add", "--ins", ins, "--family", "X", "--given", "Y",
                   "--birthdate", "12/05/1985", "--password", "patient-password")
    assert bad_date.exit_code == 2 and "YYYY-MM-DD" in bad_date.output
    assert f"{ins}@patient.example\tPAT\tactive" in mss(*d, "mailbox", "list").output


def test_ins_control_key_including_corsica() -> None:
    # Key = 97 - (NIR mod 97); 2A counts as 19, 2B as 18.
    assert nir_control_key("1850575112034") == 97 - 1850575112034 % 97
    assert nir_control_key("18505" + "2A" + "112034") == 97 - int("18505" + "19" + "112034") % 97
    assert nir_control_key("18505" + "2B" + "112034") == 97 - int("18505" + "18" + "112034") % 97
    corsican = "185052A112034"
    assert validate_ins(f"{corsican}{nir_control_key(corsican):02d}") == (
        f"{corsican}{nir_control_key(corsican):02d}"
    )
    with pytest.raises(InvalidINS):
        validate_ins("185052C11203412")
    with pytest.raises(InvalidINS):
        validate_ins("585057511203412")  # 5 is no sex/status digit


def test_data_dir_from_environment_and_clear_errors(data_dir: Path, tmp_path: Path) -> None:
    listing = mss("mailbox", "list", env={"MSS_DATA_DIR": str(data_dir)})
    assert listing.exit_code == 0
    nowhere = mss("--data-dir", str(tmp_path / "nope"), "mailbox", "list")
    assert nowhere.exit_code == 1 and "mss init" in nowhere.output
    no_dir = mss("mailbox", "list", env={"MSS_DATA_DIR": ""})
    assert no_dir.exit_code == 2 and "--data-dir" in no_dir.output
    (data_dir / "mss.toml").write_text(
        (data_dir / "mss.toml").read_text() + "\n[smtp.typo]\nx = 1\n"
    )
    broken = mss("--data-dir", str(data_dir), "mailbox", "list")
    assert broken.exit_code == 1 and "unknown setting" in broken.output


def test_environment_overrides_settings(data_dir: Path) -> None:
    settings = load_settings(data_dir, environ={"MSS_SMTP_MAX_RECIPIENTS": "7",
                                                 "MSS_DATABASE_URL": "sqlite+aiosqlite:///x"})
    assert settings.smtp.max_recipients == 7
    assert settings.database_url == "sqlite+aiosqlite:///x"
    from mailserver.settings import SettingsError

    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(data_dir, environ={"MSS_SMTP_MAX_RECIPIENTS": "many"})
