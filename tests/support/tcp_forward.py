"""A TCP port that forwards each connection to another socket: how a container reaches the test PostgreSQL.

The embedded test server listens on a Unix socket only, and a container on Docker's bridge can reach the host only
through the bridge's address. A forwarder listening there hands each connection to the server's own socket, so the
function in the container talks to the very database (and role setup) the in-process tests use.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Self

Connect = Callable[[], socket.socket]


def unix_socket(path: str) -> Connect:
    def connect() -> socket.socket:
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        peer.connect(path)
        return peer

    return connect


def tcp_socket(host: str, port: int) -> Connect:
    def connect() -> socket.socket:
        peer = socket.create_connection((host, port))
        peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return peer

    return connect


class Forwarder:
    """Listens on ``(host, any free port)``; every accepted connection is piped both ways to ``connect()``."""

    def __init__(self, host: str, connect: Connect) -> None:
        self._connect = connect
        self._listener = socket.create_server((host, 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="tcp-forward", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed by __exit__
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                server = self._connect()
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        """Copies until ``source`` ends, then passes the end on; the last direction to finish closes both."""
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with self._lock:
            self._open.discard(source)
            if sink not in self._open:
                source.close()
                sink.close()
