"""Helpers for asyncio streams shared by the TCP servers."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

__all__ = ["close_writer"]

CLOSE_TIMEOUT = 2.0


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a connection without waiting forever for a peer that never acknowledges (TLS close_notify, FIN)."""
    writer.close()
    with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError, OSError):
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
