"""The message store: folders, messages, bodies, threads, change notifications."""

from mailserver.store.api import (
    Appended,
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
    "Appended", "BodyMissing", "CopyResult", "Delivered", "FlagResult", "FolderInfo",
    "FolderStats", "MessageInfo", "Store", "StoreError", "ThreadInfo", "ThreadUpdate",
]
