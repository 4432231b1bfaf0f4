"""Prometheus-style series selectors: the parser and the compiler to SQL conditions.

``cpu_temp{host="a",zone=~"eu-.*",env!="dev"}``: an optional metric name, then
label matchers ``=``, ``!=``, ``=~``, ``!~`` with double-, single- or back-quoted
values (escapes ``\\"``, ``\\\\``, ``\\n``, ``\\t``). ``__name__`` matches the
metric name. Like Prometheus, a label that a series lacks has the value "" and a
regex must match the whole value (it is anchored as ``^(?:re)$``). Regexes are
evaluated by PostgreSQL (its ARE syntax, close to RE2 for common patterns); every
name and value reaches SQL as a parameter.

The core's readers (:mod:`pgpulse.store.series_reads`, exports) compile selectors
with :func:`where`; a text that is not a selector raises :class:`SelectorError`
(a ``ValueError`` with the position), which the HTTP layer answers with a 400
naming its parameter.
"""

from __future__ import annotations

import dataclasses
import re

import orjson
from psycopg import sql

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OPS = ("=~", "!~", "!=", "=")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "`": "`"}
MAX_SELECTOR_LENGTH = 4096


class SelectorError(ValueError):
    """Text that is not a selector; ``position`` is where parsing stopped (or None)."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@dataclasses.dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclasses.dataclass(frozen=True)
class Selector:
    matchers: tuple[Matcher, ...]

    @property
    def metric(self) -> str | None:
        for m in self.matchers:
            if m.label == "__name__" and m.op == "=":
                return m.value
        return None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str):
        return SelectorError(f"invalid selector at position {self.pos}: {message}", self.pos)

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def ident(self, pattern: re.Pattern[str], what: str) -> str:
        match = pattern.match(self.text, self.pos)
        if not match:
            raise self.fail(f"expected a {what}")
        self.pos = match.end()
        return match.group()

    def string(self) -> str:
        quote = self.peek()
        if quote not in ('"', "'", "`"):
            raise self.fail("expected a quoted value")
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(self.text):
                raise self.fail("unterminated string")
            ch = self.text[self.pos]
            self.pos += 1
            if ch == quote:
                return "".join(out)
            if ch == "\\" and quote != "`":
                if self.pos >= len(self.text):
                    raise self.fail("unterminated string")
                esc = self.text[self.pos]
                self.pos += 1
                if esc not in _ESCAPES:
                    raise self.fail(f"unknown escape \\{esc}")
                out.append(_ESCAPES[esc])
            else:
                out.append(ch)

    def parse(self) -> Selector:
        matchers: list[Matcher] = []
        self.skip()
        if _NAME.match(self.text, self.pos):
            matchers.append(Matcher("__name__", "=", self.ident(_NAME, "metric name")))
            self.skip()
        if self.peek() == "{":
            self.pos += 1
            self.skip()
            while self.peek() != "}":
                label = self.ident(_LABEL, "label name")
                self.skip()
                op = next((o for o in _OPS if self.text.startswith(o, self.pos)), None)
                if op is None:
                    raise self.fail("expected one of =, !=, =~, !~")
                self.pos += len(op)
                self.skip()
                value = self.string()
                if "\x00" in value:
                    raise self.fail("NUL character in a value")
                matchers.append(Matcher(label, op, value))
                self.skip()
                if self.peek() == ",":
                    self.pos += 1
                    self.skip()
                elif self.peek() != "}":
                    raise self.fail("expected , or }")
            self.pos += 1
            self.skip()
        if self.pos != len(self.text):
            raise self.fail("unexpected text")
        if not matchers:
            raise self.fail("expected a metric name or {label matchers}")
        if all(_matches_empty(m) for m in matchers):
            raise SelectorError("selector must contain at least one matcher that does not match "
                                "the empty string (e.g. a metric name)")
        return Selector(tuple(matchers))


def _matches_empty(m: Matcher) -> bool:
    if m.op == "=":
        return m.value == ""
    if m.op == "!=":
        return m.value != ""
    if m.op == "=~":
        return m.value in ("", ".*", "(.*)", ".*?")
    return False  # !~ : assume it excludes ""; the query still works if it does not


def parse(text: str | None) -> Selector:
    if text is None or not text.strip():
        raise SelectorError("a series selector is required, e.g. cpu_temp{host=\"a\"}")
    if len(text) > MAX_SELECTOR_LENGTH:
        raise SelectorError(f"selector longer than {MAX_SELECTOR_LENGTH} characters")
    return _Parser(text).parse()


def _anchored(regex: str) -> str:
    return "^(?:" + regex + ")$"


def where(selector: Selector) -> tuple[sql.Composable, list[object]]:
    """A WHERE condition on ``series`` (columns name, labels) and its parameters."""
    parts: list[sql.Composable] = []
    params: list[object] = []
    contains: dict[str, str] = {}
    for m in selector.matchers:
        if m.label == "__name__":
            column = sql.SQL("name")
        else:
            column = sql.SQL("coalesce(labels ->> %s, '')")
        if m.label != "__name__" and m.op == "=" and m.value != "":
            contains[m.label] = m.value  # served by the GIN index on labels
            continue
        op = {"=": "=", "!=": "<>", "=~": "~", "!~": "!~"}[m.op]
        parts.append(sql.SQL("{} {} %s").format(column, sql.SQL(op)))
        if m.label != "__name__":
            params.append(m.label)
        params.append(_anchored(m.value) if m.op in ("=~", "!~") else m.value)
    if contains:
        parts.insert(0, sql.SQL("labels @> %s::jsonb"))
        params.insert(0, orjson.dumps(contains).decode())
    return sql.SQL(" AND ").join(parts), params
