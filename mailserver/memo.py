"""A memo for values that recur message after message (a sender's Content-Type, the
names in an XDM package, a sender's certificates), bounded twice: at most ``maxsize``
values kept, and only values of at most ``max_len`` characters or bytes. Longer ones
(a hostile sender's) are read each time and never kept, so what the memo holds stays
under maxsize × max_len whatever senders send."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sized
from functools import lru_cache, update_wrapper
from typing import Protocol, TypeVar


class _Key(Hashable, Sized, Protocol):
    """A str or bytes value: hashed by the memo, measured before."""


K = TypeVar("K", bound=_Key)
V = TypeVar("V")


def short_values(max_len: int, maxsize: int) -> Callable[[Callable[[K], V]], Callable[[K], V]]:
    """Decorate a pure one-argument reader: its results kept for short arguments."""

    def decorate(read: Callable[[K], V]) -> Callable[[K], V]:
        kept = lru_cache(maxsize=maxsize)(read)

        def memo(value: K) -> V:
            return kept(value) if len(value) <= max_len else read(value)

        return update_wrapper(memo, read)

    return decorate
