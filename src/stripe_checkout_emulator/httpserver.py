"""Minimal asyncio HTTP/1.1 server that can drop a connection without answering."""

# Why not ASGI under uvicorn/granian: an ASGI server answers a failing app with
# a 500 and never lets it cut the socket, so a connection dying before any
# response byte (the `drop` fault) cannot be emulated there. This server owns
# the socket and aborts it when the handler returns DROP.

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
MAX_BODY = 8 * 1024 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names; a repeated header keeps its last value
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


class Drop:
    """Returned by a handler to close the connection without any response."""


DROP = Drop()
Handler = Callable[[Request], Awaitable[Response | Drop]]


class _BadRequest(Exception):
    pass


class HTTPServer:
    """Serves `handler` on host:port; keep-alive, Content-Length and chunked bodies."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> tuple[str, int]:
        """Bind and listen; returns the bound (host, port)."""
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, limit=MAX_HEAD
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def close(self) -> None:
        """Stop listening and cut every open connection, including hung requests."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to answer
        except asyncio.CancelledError:
            # Only close() cancels these tasks. Ending quietly, rather than
            # re-raising, keeps asyncio's stream callback from logging the
            # cancellation as an error.
            writer.transport.abort()
        except Exception:
            log.exception("emulator connection failed")
        finally:
            self._connections.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection must end."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                log.debug("client closed mid-request")
            return False
        except asyncio.LimitOverrunError:
            await _write(writer, Response(431), keep_alive=False)
            return False
        try:
            request, version = _parse_head(head)
            if request.headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.body = await _read_body(reader, request.headers)
        except _BadRequest as exc:
            await _write(writer, Response(400, str(exc).encode()), keep_alive=False)
            return False
        keep_alive = _keep_alive(version, request.headers)
        result = await self._handler(request)
        if isinstance(result, Drop):
            # abort() discards buffers and resets: the client sees the
            # connection die with no status line, as on a real network cut.
            writer.transport.abort()
            return False
        await _write(writer, result, keep_alive)
        return keep_alive


def _parse_head(head: bytes) -> tuple[Request, str]:
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError as exc:
        raise _BadRequest("malformed request line") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest("malformed header")
        headers[name.strip().lower()] = value.strip()
    path, _, query = target.partition("?")
    return Request(method.upper(), path, query, headers), version


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as exc:
        raise _BadRequest("bad content-length") from exc
    if length < 0 or length > MAX_BODY:
        raise _BadRequest("body too large")
    return await reader.readexactly(length) if length else b""


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError as exc:
            raise _BadRequest("bad chunk size") from exc
        if size == 0:
            # Skip optional trailers up to the blank line.
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)
        if len(body) > MAX_BODY:
            raise _BadRequest("body too large")


def _keep_alive(version: str, headers: dict[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


async def _write(writer: asyncio.StreamWriter, response: Response, keep_alive: bool) -> None:
    lines = [f"HTTP/1.1 {response.status} {_reason(response.status)}"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    lines.append(f"Content-Length: {len(response.body)}")
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)
    await writer.drain()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
