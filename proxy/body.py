"""Reading request bodies: size caps (also after gzip), JSON parsing with orjson."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from flask import request
from werkzeug.exceptions import ClientDisconnected

from proxy.errors import ApiError, bad_request


def too_large(limit: int, what: str = "request body") -> ApiError:
    return ApiError(413, f"{what} larger than {limit} bytes", limit_bytes=limit)


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress gzip (several members allowed), never producing more than ``limit`` bytes."""
    out: list[bytes] = []
    size = 0
    while data:
        d = zlib.decompressobj(wbits=31)
        try:
            chunk = d.decompress(data, limit - size + 1)
        except zlib.error as exc:
            raise bad_request(f"body is not valid gzip: {exc}") from None
        size += len(chunk)
        if size > limit or d.unconsumed_tail:
            raise too_large(limit, "decompressed request body")
        out.append(chunk)
        if not d.eof:
            raise bad_request("body is not valid gzip: truncated stream")
        data = d.unused_data
    return b"".join(out)


def _read_chunked(limit: int) -> bytes:
    """A body without Content-Length (chunked), read one byte past ``limit``.

    Werkzeug caps such a stream at MAX_CONTENT_LENGTH and stops there quietly, so an
    oversized body would reach the parser cut short (a 400 about truncated JSON)
    instead of being a 413: read the server's decoded stream here instead."""
    if not request.environ.get("wsgi.input_terminated"):
        return b""  # the server cannot tell where the body ends: none, as werkzeug does
    stream = request.environ["wsgi.input"]
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(1 << 16, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise too_large(limit)
    return b"".join(chunks)


def read_body(limit: int) -> bytes:
    """The request body as sent (not decompressed); 413 past ``limit``."""
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit)
    try:
        data = request.get_data(cache=False) if length is not None else _read_chunked(limit)
    except (ClientDisconnected, TimeoutError):
        # The server's read timeout (PROXY_BODY_TIMEOUT_SECONDS) ran out, or the client
        # left: either way the body did not come.
        raise ApiError(408, "request body not received in time: the client stopped "
                       "sending") from None
    if len(data) > limit:
        raise too_large(limit)
    return data


def raw_body(limit: int) -> bytes:
    """The request body, decompressed when Content-Encoding says gzip; 413 past ``limit``."""
    data = read_body(limit)
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding == "gzip":
        return _gunzip(data, limit)
    if encoding != "identity":
        raise ApiError(415, f"unsupported Content-Encoding {encoding!r}: use gzip or none",
                       supported=["gzip", "identity"])
    return data


def json_body(limit: int) -> tuple[Any, bytes]:
    """(parsed JSON, raw bytes) of the request body."""
    data = raw_body(limit)
    return parse_json(data), data


def parse_json(data: bytes) -> Any:
    """``data`` parsed as JSON (a request body); 400 saying why when it is not JSON."""
    if not data:
        raise bad_request("empty body: expected a JSON object")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # orjson refuses NaN, Infinity, numbers that overflow a double and invalid UTF-8.
        raise bad_request(f"body is not valid JSON: {exc}", position=exc.pos) from None


PROTOBUF = "application/x-protobuf"


def require_snappy_protobuf(protocol: str, message: str, hint: str = "") -> None:
    """415 unless the request is a snappy-compressed protobuf ``message`` (an optional
    ``proto=`` parameter must name it), as Prometheus's remote write and remote read
    clients send it; ``hint`` follows the refusal of another message."""
    encoding = (request.headers.get("Content-Encoding") or "").strip().lower()
    if encoding != "snappy":
        raise ApiError(415, f"unsupported Content-Encoding {encoding or '(none)'!r}: {protocol} "
                       "requests are snappy-compressed (Content-Encoding: snappy)",
                       supported=["snappy"])
    mimetype = request.mimetype
    if mimetype != PROTOBUF:
        raise ApiError(415, f"unsupported Content-Type {mimetype or '(none)'!r}: {protocol} "
                       f"sends {PROTOBUF}", supported=[PROTOBUF])
    proto = request.mimetype_params.get("proto")
    if proto is not None and proto != message:
        raise ApiError(415, f"unsupported protobuf message {proto!r}: this endpoint takes "
                       f"{message}{hint}", supported=[message])
