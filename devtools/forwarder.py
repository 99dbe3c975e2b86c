"""A controllable TCP forwarder for outage tests: put it between a client and a server, then cut or hang the link.

Generic (it relays bytes, whatever the protocol): Redis, PostgreSQL, an HTTP upstream. It runs its own
event loop in a daemon thread, so sync tests and async tests (on any loop) drive it alike; every control
call returns once the change is in effect.

    with TcpForwarder("127.0.0.1", 5432) as fwd:
        url = f"postgresql+asyncpg://postgres@{fwd.netloc}/mydb"
        ...                 # works as if connected directly
        fwd.cut()           # the server is gone: open connections are reset, new ones refused
        fwd.hang()          # the server stalls: connections are accepted, nothing is forwarded or answered
        fwd.restore()       # back to normal

- `cut()` aborts every open connection (both sides, with a reset) and closes the listening socket, so a
  connect is refused (ECONNREFUSED) like a stopped server's. `restore()` listens on the same port again.
- `hang()` keeps listening: new connections are accepted but never connected upstream, and open ones
  stop relaying in both directions (bytes read meanwhile are held). After `restore()` the held bytes and
  held connections go through, as after a healed network partition; clients that gave up meanwhile
  have closed their side, and their connections end.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, Literal

_CHUNK = 65536
Mode = Literal["open", "hung", "cut"]


class TcpForwarder:
    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.host = listen_host
        self.port = 0  # the free port picked at start()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"forwarder->{target_port}", daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()  # set unless hung; created before the loop runs, used only on it
        self._relays: set[asyncio.Task[None]] = set()

    @property
    def netloc(self) -> str:
        """host:port to give clients instead of the target's."""
        return f"{self.host}:{self.port}"

    # -- control (any thread) ------------------------------------------------------------------------

    def start(self) -> TcpForwarder:
        self._thread.start()
        self._call(self._set_mode("open"))
        return self

    def cut(self) -> None:
        self._call(self._set_mode("cut"))

    def hang(self) -> None:
        self._call(self._set_mode("hung"))

    def restore(self) -> None:
        self._call(self._set_mode("open"))

    def stop(self) -> None:
        """Close everything and end the thread."""
        self._call(self._set_mode("cut"))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> TcpForwarder:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- on the forwarder's loop ---------------------------------------------------------------------

    async def _set_mode(self, mode: Mode) -> None:
        if mode == "open":
            self._flowing.set()
        else:
            self._flowing.clear()
        if mode == "cut":
            if self._server is not None:
                self._server.close()
                self._server = None
            for relay in list(self._relays):
                relay.cancel()
            await asyncio.gather(*self._relays, return_exceptions=True)
        elif self._server is None:
            self._server = await asyncio.start_server(self._relay, self.host, self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        writers = [client_writer]
        try:
            await self._flowing.wait()  # hung: accepted, never answered
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            writers.append(upstream_writer)
            await asyncio.gather(
                self._pump(client_reader, upstream_writer, client_writer),
                self._pump(upstream_reader, client_writer, upstream_writer),
            )
        except OSError:
            pass  # the server refused the connection; the client's is closed below
        except asyncio.CancelledError:  # cut: a reset on both sides, as when a server or a network dies
            for writer in writers:
                _reset(writer)
            # not re-raised: this is the connection's own task, and Python 3.11's asyncio.streams logs a
            # traceback for such a task that ends cancelled
        finally:
            self._relays.discard(task)
            for writer in writers:
                writer.close()

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, src_writer: asyncio.StreamWriter
    ) -> None:
        """Relay one direction until EOF (passed on as a half-close); on an error, reset both sides."""
        try:
            while data := await src.read(_CHUNK):
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()
        except OSError:
            for writer in (src_writer, dst):
                _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Drop a connection with a TCP reset (RST), not a graceful FIN: what a peer sees when a server dies."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
