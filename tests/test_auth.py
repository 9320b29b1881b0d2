"""Password logins: Argon2id hashes, the verified-credentials cache, throttling."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from directory.models import MailboxType
from directory.service import Directory
from mailserver import auth
from mailserver.auth import (
    Authenticator,
    LoginOutcome,
    VerifiedCache,
    hash_password,
    verify_password,
)
from mailserver.settings import AuthSettings
from mailserver.store.database import create_engine
from mailserver.store.migrate import upgrade


def test_hashes_are_argon2id_and_salted() -> None:
    first, second = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert first.startswith("$argon2id$") and first != second
    assert verify_password(first, "s3cret-pass")
    assert not verify_password(first, "s3cret-pasS")
    assert not verify_password("not a hash", "s3cret-pass")


def test_verified_cache_misses_after_password_change_and_expiry() -> None:
    cache = VerifiedCache(ttl=0.2)
    old_hash = hash_password("old-password")
    cache.remember("a@h.example", old_hash, "old-password")
    assert cache.check("a@h.example", old_hash, "old-password")
    assert not cache.check("a@h.example", old_hash, "wrong-password")
    new_hash = hash_password("new-password")  # passwd / reset: the stored hash changed
    assert not cache.check("a@h.example", new_hash, "old-password")
    time.sleep(0.25)
    assert not cache.check("a@h.example", old_hash, "old-password")


def test_verified_cache_is_bounded() -> None:
    cache = VerifiedCache(size=3)
    for i in range(10):
        cache.remember(f"u{i}@h.example", "hash", "pw")
    assert len(cache._entries) == 3
    assert cache.check("u9@h.example", "hash", "pw")
    assert not cache.check("u0@h.example", "hash", "pw")


async def test_concurrent_logins_share_one_argon2_verification(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients reconnecting at once (IDLE after a restart) to one mailbox pay one
    Argon2 verification, not one each; a wrong password is not let through."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'auth.sqlite3'}")
    await upgrade(engine)
    directory = Directory(engine)
    await directory.add_mailbox("a@h.example", MailboxType.PER,
                                password_hash=hash_password("right-password"))
    verified: list[str] = []

    def counting(stored_hash: str, password: str) -> bool:  # the real check, counted
        verified.append(password)
        return verify_password(stored_hash, password)

    monkeypatch.setattr(auth, "verify_password", counting)
    authenticator = Authenticator(directory, AuthSettings(
        failure_delay=0.0, max_failures=1000, window=60, patients_on_smtp=True,
        patients_on_imap=True))
    results = await asyncio.gather(*(
        authenticator.login("a@h.example", "right-password", client_ip=f"10.0.0.{i}",
                            door="imap") for i in range(20)))
    assert all(r.outcome is LoginOutcome.OK for r in results)
    assert verified == ["right-password"]
    wrong = await asyncio.gather(*(
        authenticator.login("a@h.example", "wrong-password", client_ip="10.0.1.1",
                            door="imap") for _ in range(3)))
    assert all(r.outcome is LoginOutcome.INVALID for r in wrong)
    await engine.dispose()
