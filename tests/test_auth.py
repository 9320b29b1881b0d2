"""Password logins: Argon2id hashes, the verified-credentials cache, throttling."""

from __future__ import annotations

import time

from mailserver.auth import VerifiedCache, hash_password, verify_password


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
