"""asyncio's TLS layer without a 256 KiB buffer per connection.

``asyncio.sslproto.SSLProtocol`` (Python 3.11+) gives every TLS connection its
own ``bytearray(256 KiB)``, zero-filled so resident, only to receive socket bytes
before they are handed to the TLS engine. The buffer is used synchronously: the
transport asks for it, ``recv_into`` fills it and ``buffer_updated`` copies the
bytes into the connection's ``MemoryBIO`` in the same callback. One buffer per
thread (one event loop runs in one thread) therefore serves every connection:
10,000 IDLE connections held 2.5 GiB in these buffers alone.

``install()`` makes asyncio build ``LeanSSLProtocol`` for every TLS connection of
the process (listeners with ``ssl=``, ``start_tls`` for STARTTLS). It is a no-op
on a Python whose ``sslproto`` does not have the expected shape.
"""

from __future__ import annotations

import threading
from asyncio import sslproto
from typing import Any

_RECEIVE_SIZE = 256 * 1024  # as asyncio's: one recv() drains a fast sender's burst
_local = threading.local()


def _shared_view() -> memoryview:
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = memoryview(bytearray(_RECEIVE_SIZE))
        _local.view = view
    return view


class LeanSSLProtocol(sslproto.SSLProtocol):
    # Plaintext read from the TLS engine per call (the read loop continues until
    # the engine is empty); also the size of the buffer the base class allocates
    # in __init__, dropped at once for the shared one.
    max_size = 16 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ssl_buffer_view = _shared_view()
        self._ssl_buffer = self._ssl_buffer_view.obj

    def get_buffer(self, n: int) -> memoryview:
        # The socket transport fills it and calls buffer_updated() at once, which
        # copies it into the TLS engine: nothing stays in it between callbacks.
        view = _shared_view()
        self._ssl_buffer_view = view
        return view


def install() -> None:
    if sslproto.SSLProtocol is LeanSSLProtocol:
        return
    base = sslproto.SSLProtocol
    if not (hasattr(base, "get_buffer") and hasattr(base, "buffer_updated")
            and "_ssl_buffer_view" in base.__init__.__code__.co_names):
        return  # another asyncio: keep its own protocol
    sslproto.SSLProtocol = LeanSSLProtocol  # type: ignore[misc]
