"""A TCP relay on 127.0.0.1 in front of the test PostgreSQL server, to cut the
database off from a client and give it back: ``cut()`` drops every open connection
and refuses new ones (the listening socket is closed: ECONNREFUSED), ``restore()``
listens again on the same port; ``delay`` slows every reply from the server, so a
test can catch a client in the middle of a transaction."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


class TcpRelay:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        # A host starting with "/" is the directory of a Unix socket (embedded server).
        if upstream_host.startswith("/"):
            self._upstream = (socket.AF_UNIX, f"{upstream_host}/.s.PGSQL.{upstream_port}")
        else:
            self._upstream = (socket.AF_INET, (upstream_host, upstream_port))
        self.delay = 0.0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self._start_accepting()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        return listener

    def _start_accepting(self) -> None:
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed: cut() or close()
            family, address = self._upstream
            try:
                server = socket.socket(family, socket.SOCK_STREAM)
                server.connect(address)
            except OSError:
                self._abort(client)
                continue
            with self._lock:
                self._open.update((client, server))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_server and self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass  # one side went away: close both below
        finally:
            for sock in (src, dst):
                self._abort(sock)

    def _abort(self, sock: socket.socket) -> None:
        # Reset rather than a clean close: what a crashed server or a cut cable gives.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            sock.close()
        with self._lock:
            self._open.discard(sock)

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        # shutdown() first: a close() alone leaves a thread blocked in accept()
        # holding the socket, which then keeps listening.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            socks = list(self._open)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            self._abort(sock)

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        self._listener = self._listen(self.port)
        self._start_accepting()

    def close(self) -> None:
        self.cut()
