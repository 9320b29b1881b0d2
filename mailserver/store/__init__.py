"""The message store: folders, messages, bodies, threads, change notifications."""

from mailserver.store.api import (
    Delivered,
    FolderInfo,
    MessageInfo,
    Store,
    StoreError,
    ThreadInfo,
    ThreadUpdate,
)

__all__ = [
    "Delivered", "FolderInfo", "MessageInfo", "Store", "StoreError", "ThreadInfo",
    "ThreadUpdate",
]
