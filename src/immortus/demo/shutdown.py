"""Stop the demo's server promptly and quietly while event streams are open.

A page following a running job holds an event stream open, and uvicorn, when stopping, waits for
every response to end; past its timeout it cancels them and logs each with a traceback. Instead,
:class:`DemoServer` tells :class:`EndOnShutdown` when it starts stopping: every open request then
sees its client leave (``http.disconnect``), which ends immortus's streams, and a response left
unfinished is closed with an empty last chunk. The browser's client sees the stream end, as it
would if the network dropped.
"""

from __future__ import annotations

import asyncio
import socket

from immortus.exceptions import MissingDependency

try:
    import uvicorn
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as exc:
    raise MissingDependency((exc.name or "uvicorn").partition(".")[0], "demo") from exc

__all__ = ["DemoServer", "EndOnShutdown"]

_DISCONNECT: Message = {"type": "http.disconnect"}
_LAST_CHUNK: Message = {"type": "http.response.body", "body": b"", "more_body": False}


class EndOnShutdown:
    """ASGI middleware: once :meth:`shut_down` is called, open HTTP requests end at once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # asyncio.Event binds to the running loop when first awaited, not when made.
        self._stopping = asyncio.Event()

    def shut_down(self) -> None:
        """Make every open request see its client leave; call it in the server's event loop."""
        self._stopping.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; once shutting down, its ``receive`` says the client left."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = finished = False

        async def receive_until_shutdown() -> Message:
            if self._stopping.is_set():
                return _DISCONNECT
            message = asyncio.ensure_future(receive())
            stopping = asyncio.ensure_future(self._stopping.wait())
            done, _ = await asyncio.wait({message, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if message in done:
                return message.result()
            message.cancel()
            return _DISCONNECT

        async def tracked_send(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        await self.app(scope, receive_until_shutdown, tracked_send)
        if started and not finished and self._stopping.is_set():
            await send(_LAST_CHUNK)


class DemoServer(uvicorn.Server):
    """A uvicorn server that ends its app's open requests as soon as it starts stopping."""

    def __init__(self, config: uvicorn.Config, app: EndOnShutdown) -> None:
        super().__init__(config)
        self.ending = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Called by uvicorn when it stops: end the open requests, then stop as uvicorn does."""
        self.ending.shut_down()
        await super().shutdown(sockets)
