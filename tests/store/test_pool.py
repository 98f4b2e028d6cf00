"""The pool's connections: TCP keepalives on TCP, none needed (and no error) on a unix socket."""

from __future__ import annotations

import socket
from urllib.parse import quote, urlsplit

from h2s_checkout.store.pool import connection, create_pool


def _socket_of(conn) -> socket.socket:  # type: ignore[no-untyped-def]
    return conn._con._transport.get_extra_info("socket")  # asyncpg has no public accessor


async def test_tcp_connections_probe_a_vanished_peer_with_keepalives(database_url):
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with connection(pool) as conn:
            sock = _socket_of(conn)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 5
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            if hasattr(socket, "TCP_USER_TIMEOUT"):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 45_000
    finally:
        await pool.close()


async def test_unix_socket_connections_work_without_keepalives(database_url, db):
    socket_dir = (await db.fetchval("show unix_socket_directories")).split(",")[0].strip()
    parts = urlsplit(database_url)
    dsn = f"postgresql://{parts.username}@/{parts.path.lstrip('/')}?host={quote(socket_dir)}"
    dsn += f"&port={parts.port}"
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        async with connection(pool) as conn:
            assert _socket_of(conn).family == socket.AF_UNIX
            assert await conn.fetchval("select 1") == 1
    finally:
        await pool.close()
