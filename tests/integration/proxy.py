"""A TCP proxy a test can cut: every connection through it ends at once and new ones are
refused (closed on arrival), as when the database server goes away; ``restore`` lets them
through again."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.abc

if TYPE_CHECKING:
    from anyio.abc import SocketStream, TaskStatus


class Proxy:
    """Forwards 127.0.0.1:``port`` to the server a DSN names; run it with ``tg.start(serve)``."""

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        self._dsn = parts
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._scopes: set[anyio.CancelScope] = set()
        self.cut_off = False
        self.port = 0

    @property
    def dsn(self) -> str:
        """The DSN, through the proxy."""
        netloc = self._dsn.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        return urlunsplit(
            self._dsn._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) > 1 else host)
        )

    def cut(self) -> None:
        """End every connection through it and refuse new ones."""
        self.cut_off = True
        for scope in list(self._scopes):
            scope.cancel()

    def restore(self) -> None:
        """Let connections through again."""
        self.cut_off = False

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with listener:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            task_status.started()
            await listener.serve(self._forward)

    async def _forward(self, client: SocketStream) -> None:
        async with client:
            if self.cut_off:
                return
            with anyio.CancelScope() as scope, contextlib.suppress(Exception):
                self._scopes.add(scope)
                try:
                    async with (
                        await anyio.connect_tcp(*self._target) as server,
                        anyio.create_task_group() as tg,
                    ):
                        tg.start_soon(_pipe, client, server, tg.cancel_scope)
                        await _pipe(server, client, tg.cancel_scope)
                finally:
                    self._scopes.discard(scope)


async def _pipe(source: SocketStream, sink: SocketStream, scope: anyio.CancelScope) -> None:
    with contextlib.suppress(Exception):
        async for chunk in source:
            await sink.send(chunk)
    scope.cancel()
