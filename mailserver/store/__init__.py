"""The message store: folders, messages, bodies, threads, change notifications."""

from mailserver.store.api import (
    BodyMissing,
    CopyResult,
    Delivered,
    FlagResult,
    FolderInfo,
    FolderStats,
    MessageInfo,
    Store,
    StoreError,
    ThreadInfo,
    ThreadUpdate,
)

__all__ = [
    "BodyMissing", "CopyResult", "Delivered", "FlagResult", "FolderInfo", "FolderStats",
    "MessageInfo", "Store", "StoreError", "ThreadInfo", "ThreadUpdate",
]
