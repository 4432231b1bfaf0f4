"""The gunicorn worker of ``pgpulse proxy``: gthread, but a slow client holds no thread.

gunicorn's gthread worker hands a connection to a thread as soon as its first bytes
arrive, and the thread then blocks reading the rest of the request line and headers:
sixteen clients sending one header line every few seconds pin every thread, and
``/health`` stops answering. This worker reads the request line and headers in its
event loop instead (non-blocking, with a deadline) and gives a connection to a
thread only once they are complete. In the thread, every read of the body and every
write of the answer has a timeout, so a client that stops sending or stops reading
frees its thread too.

A worker accepts a new connection only while one of its threads is free. gunicorn's
gthread accepts whenever it has room for a connection, so a worker whose only thread
is busy with a batch still takes the next keep-alive client, which then waits behind
it for its whole life while the other workers idle: three senders on three workers
measured CPU splits of [6.0, 0, 0] s as often as [2.0, 1.9, 1.8] s, and half the
throughput. Refusing to accept while busy leaves the connection in the listen
backlog for a worker with a free thread (bench/bench_ingest.py prints the split).

Once the application is loaded, the objects made at start-up (modules, the app,
its routes and settings) are moved out of the collector's sight (``gc.freeze()``):
every full collection would otherwise scan them again, for nothing.

Errors answered at this layer (headers too slow or too large, a request gunicorn
cannot parse) are JSON in the one error shape of the API, like every other answer.
"""

from __future__ import annotations

import errno
import gc
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import TConn, ThreadWorker
from werkzeug.serving import WSGIRequestHandler

from proxy.errors import error_response

# The request line and headers together: a selector of the documented 4,096
# characters fits in a URL even with every byte percent-encoded, with room for the
# other parameters and ordinary headers.
MAX_HEAD_BYTES = 64 * 1024
_READ_SIZE = 64 * 1024
# Seconds a stopping worker still waits for a request head already on its way.
STOP_HEAD_LINGER = 2.0
# Seconds a fresh connection that sent nothing yet counts as a busy thread.
RESERVE_S = 1.0

_REASONS = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout",
            414: "URI Too Long", 417: "Expectation Failed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            501: "Not Implemented"}


def error_bytes(status: int, message: str, **details: Any) -> bytes:
    """A whole HTTP/1.1 error answer with the API's JSON error body; the connection
    closes after it."""
    body = error_response(status, message, **details).get_data()
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode("latin-1") + body


def parse_error_status(exc: BaseException) -> int | None:
    """The status of a request gunicorn could not parse (None: not the client's fault)."""
    if isinstance(exc, (http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName)):
        return None  # the application sent a bad header: a 500
    if isinstance(exc, http_errors.LimitRequestLine):
        return 414
    if isinstance(exc, http_errors.LimitRequestHeaders):
        return 431
    if isinstance(exc, http_errors.UnsupportedTransferCoding):
        return 501
    if isinstance(exc, http_errors.ExpectationFailed):
        return 417
    if isinstance(exc, http_errors.ForbiddenProxyRequest):
        return 403
    if isinstance(exc, http_errors.ConfigurationProblem):
        return None
    if isinstance(exc, http_errors.ParseException):
        return 400
    return None


def _head_end(data: bytes | bytearray) -> int | None:
    """Where the request line and headers end (the blank line), or None. Blank lines
    before the request line (allowed by RFC 9112) do not count: a thread must never
    wait for a request line that has not come."""
    start = len(data) - len(data.lstrip(b"\r\n"))
    ends = [i for i in (data.find(b"\r\n\r\n", start), data.find(b"\n\n", start)) if i >= 0]
    return min(ends) if ends else None


class ProxyWorker(ThreadWorker):
    """gthread with request heads read in the event loop and timed socket reads.

    ``header_timeout`` and ``body_timeout`` (seconds) are set by
    :func:`worker_class` from the proxy's settings."""

    header_timeout: float = 20.0
    body_timeout: float = 30.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Connections whose request head is still arriving, oldest first (so their
        # deadlines are in order too: every one gets the same timeout).
        self.head_conns: dict = {}
        self._stop_capped = False
        # Requests handed to the thread pool and not finished yet, and connections
        # accepted whose first bytes have not come yet (see set_accept_enabled).
        self.busy = 0
        self.reserved = 0

    def load_wsgi(self) -> None:
        super().load_wsgi()
        gc.collect()
        gc.freeze()

    def _reads_heads(self) -> bool:
        # TLS and HTTP/2 prior knowledge read the socket themselves in the thread; the
        # proxy uses neither, but keep gunicorn's way for them rather than break it.
        return not self.cfg.is_ssl and self.cfg.http2_cleartext not in ("prior-knowledge", "both")

    # -- connections in the event loop ---------------------------------------------------

    def set_accept_enabled(self, enabled: bool) -> None:
        # Called by gunicorn's loop with "room for another connection": accept only
        # when a thread is free as well (the module's docstring says why). A fresh
        # connection counts as busy until its first bytes come (at most RESERVE_S):
        # otherwise an idle worker could accept every connection of a burst before
        # the first becomes a request. Once a client has sent something (a slow one
        # included) its head costs no thread and reserves none.
        super().set_accept_enabled(enabled and self.busy + self.reserved < self.cfg.threads)

    def _update_accept(self) -> None:
        if self.alive:
            self.set_accept_enabled(self.nr_conns < self.worker_connections)

    def accept(self, listener) -> None:
        if not self._reads_heads():
            return super().accept(listener)
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())
        self._read_head(conn)

    def on_client_socket_readable(self, conn, client) -> None:
        # A kept-alive connection sends its next request: read its head here too.
        if not self._reads_heads():
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read_head(conn)

    def enqueue_req(self, conn) -> None:
        # After an answer, bytes the client pipelined may already sit in the parser's
        # buffer: a head that is not complete there is read on in the event loop too.
        if self._reads_heads() and getattr(conn, "head", None) is None and conn.parser is not None:
            pending = conn.parser.unreader.buf.getvalue()
            if pending and _head_end(pending) is None:
                conn.parser.unreader.take_buffered()
                self._read_head(conn, pending)
                return
        self.busy += 1
        self._update_accept()
        super().enqueue_req(conn)

    def finish_request(self, conn, fs) -> None:
        self.busy -= 1
        super().finish_request(conn, fs)
        self._update_accept()

    def _read_head(self, conn, already: bytes = b"") -> None:
        conn.sock.setblocking(False)
        conn.head = bytearray(already)
        conn.reserved_until = None
        if not already:
            conn.reserved_until = time.monotonic() + RESERVE_S
            self.reserved += 1
            self._update_accept()
        conn.head_deadline = time.monotonic() + (self.header_timeout if self.alive
                                                 else STOP_HEAD_LINGER)
        self.head_conns[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_head_bytes, conn))

    def _on_head_bytes(self, conn, _sock) -> None:
        try:
            data = conn.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        self._unreserve(conn)
        if not data:  # the client went away
            self._end_head(conn)
            self._close(conn)
            return
        conn.head += data
        end = _head_end(conn.head)
        if end is None and len(conn.head) <= MAX_HEAD_BYTES:
            return  # more to come
        self._end_head(conn)
        if end is not None and end <= MAX_HEAD_BYTES:
            conn.data_ready = True
            self.enqueue_req(conn)
        else:
            line_end = conn.head.find(b"\n")
            if 0 <= line_end <= MAX_HEAD_BYTES:
                self._refuse(conn, 431, f"request headers longer than {MAX_HEAD_BYTES} bytes",
                             limit_bytes=MAX_HEAD_BYTES)
            else:
                self._refuse(conn, 414, f"request line longer than {MAX_HEAD_BYTES} bytes",
                             limit_bytes=MAX_HEAD_BYTES)

    def _unreserve(self, conn) -> None:
        if getattr(conn, "reserved_until", None) is not None:
            conn.reserved_until = None
            self.reserved -= 1
            self._update_accept()

    def _end_head(self, conn) -> None:
        self._unreserve(conn)
        self.head_conns.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _close(self, conn) -> None:
        self.nr_conns -= 1
        conn.close()

    def _refuse(self, conn, status: int, message: str, **details: Any) -> None:
        """Answer an error from the event loop and close: one non-blocking send (a
        client that does not read loses the answer rather than stall the loop)."""
        try:
            conn.sock.send(error_bytes(status, message, **details))
        except OSError:
            pass
        self._close(conn)

    def murder_keepalived(self, force: bool = False) -> None:
        super().murder_keepalived(force)
        now = time.monotonic()
        if not self.alive and not self._stop_capped:
            # A stopping worker gives heads on their way a short while, not the whole
            # header timeout (as gunicorn does for kept-alive connections).
            self._stop_capped = True
            for conn in self.head_conns:
                conn.head_deadline = min(conn.head_deadline, now + STOP_HEAD_LINGER)
        for conn in list(self.head_conns):
            if conn.reserved_until is not None and conn.reserved_until <= now:
                self._unreserve(conn)
        for conn in list(self.head_conns):
            # A stopping worker does not wait for connections that sent nothing yet.
            idle_at_stop = not self.alive and not conn.head
            if conn.head_deadline > now and not force and not idle_at_stop:
                if self.alive:
                    break
                continue
            self._end_head(conn)
            if conn.head and not force:
                self.log.info("request head from %s not complete after %.0f s: 408",
                              conn.client, self.header_timeout)
                self._refuse(conn, 408, f"request line and headers not received within "
                             f"{self.header_timeout:g} s", timeout_seconds=self.header_timeout)
            else:
                self._close(conn)

    # -- connections in a thread -----------------------------------------------------

    def handle(self, conn):
        head = getattr(conn, "head", None)
        if head:
            conn.head = None
            conn.sock.setblocking(True)
            conn.init()
            # The parser reads what the event loop already took off the socket first.
            conn.parser.unreader.unread(bytes(head))
        return super().handle(conn)

    def handle_request(self, req, conn):
        # Every body read and answer write waits at most body_timeout for the client.
        conn.sock.settimeout(self.body_timeout)
        try:
            return super().handle_request(req, conn)
        except TimeoutError:
            # A client that stopped reading its answer (an export, say): the answer's
            # iterator was closed on the way out, which ends its database work.
            self.log.info("client %s took nothing for %g s: connection closed",
                          conn.client, self.body_timeout)
            return False

    def handle_error(self, req, client, addr, exc) -> None:
        """gunicorn's own error answers, in the API's JSON shape instead of HTML."""
        status = parse_error_status(exc)
        if status is None:
            if isinstance(exc, (TimeoutError, socket.timeout)):
                self.log.info("client %s too slow: %s", addr, exc)
                return
            self.log.exception("Error handling request")
            status, message = 500, "internal error"
        else:
            message = str(exc) or type(exc).__name__
            self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], message)
        try:
            client.setblocking(True)
            client.settimeout(self.body_timeout)
            client.sendall(error_bytes(status, message))
        except OSError:
            self.log.debug("Failed to send error message.")


def worker_class(header_timeout: float, body_timeout: float) -> type[ProxyWorker]:
    """:class:`ProxyWorker` with these timeouts (gunicorn takes a class)."""
    return type("ProxyWorker", (ProxyWorker,),
                {"header_timeout": header_timeout, "body_timeout": body_timeout})


class JsonErrorRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler (the proxy inside `pgpulse up`) with the errors of
    the HTTP layer itself (a request line over 64 KiB, a malformed request) answered
    in the API's JSON shape instead of http.server's HTML page."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        short = self.responses.get(code, ("error",))[0]
        body = error_response(code, message or short).get_data()
        self.send_response(code, short)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)
