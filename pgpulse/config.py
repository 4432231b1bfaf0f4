"""Typed settings from environment variables, declared once with default and help.

Every part of pgpulse (core, collector, proxy) declares its settings as a frozen
dataclass whose fields are made with :func:`setting`. :func:`load` reads them from
an environment mapping (the process environment merged with an optional ``.env``
file) and validates every value *once, at start*: a bad value raises
:class:`SettingsError` whose message names the variable and what it accepts, so the
program can stop with one line instead of failing later somewhere else.

This module is the only place that reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from dotenv import dotenv_values

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting has a value pgpulse cannot use; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """How one environment variable becomes one typed value."""

    env: str
    default: Any
    help: str
    parse: Callable[[str, str], Any]
    accepts: str
    secret: bool = False


def setting(
    env: str,
    default: Any,
    help: str,
    *,
    parse: Callable[[str, str], Any],
    accepts: str,
    secret: bool = False,
) -> Any:
    """Declare a dataclass field backed by the environment variable ``env``."""
    spec = Spec(env, default, help, parse, accepts, secret)
    return dataclasses.field(default=default, metadata={"spec": spec})


# -- parsers: each takes (variable name, raw text) and raises SettingsError ----------


def as_str(name: str, raw: str) -> str:
    return raw


def as_optional_str(name: str, raw: str) -> str | None:
    return raw or None


def as_int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: expected an integer") from None
        if minimum is not None and value < minimum:
            raise SettingsError(f"{name}={raw!r}: must be >= {minimum}")
        if maximum is not None and value > maximum:
            raise SettingsError(f"{name}={raw!r}: must be <= {maximum}")
        return value

    return parse


def as_float(minimum: float | None = None, *, exclusive: bool = False) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise SettingsError(f"{name}={raw!r}: expected a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise SettingsError(f"{name}={raw!r}: expected a finite number")
        if minimum is not None and (value <= minimum if exclusive else value < minimum):
            relation = ">" if exclusive else ">="
            raise SettingsError(f"{name}={raw!r}: must be {relation} {minimum:g}")
        return value

    return parse


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def as_bool(name: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r}: expected one of on, off (or true/false, 1/0)")


def one_of(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        text = raw.strip().lower()
        if text not in choices:
            raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
        return text

    return parse


def as_url(*schemes: str, optional: bool = True) -> Callable[[str, str], str | None]:
    def parse(name: str, raw: str) -> str | None:
        text = raw.strip()
        if not text and optional:
            return None
        scheme = text.split("://", 1)[0].lower() if "://" in text else ""
        if scheme not in schemes:
            raise SettingsError(
                f"{name}: expected a URL starting with {' or '.join(s + '://' for s in schemes)}"
            )
        return text

    return parse


def as_labels(name: str, raw: str) -> dict[str, str]:
    """``key=value,key2=value2`` -> dict; empty text -> {}."""
    labels: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"{name}={raw!r}: expected key=value pairs separated by commas")
        labels[key.strip()] = value.strip()
    return labels


# -- loading ------------------------------------------------------------------------


def read_environment(env_file: str | Path | None = ".env") -> dict[str, str]:
    """The process environment over the values of ``env_file`` (when it exists)."""
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ)
    return merged


def specs(cls: type) -> Iterator[tuple[str, Spec]]:
    """(field name, spec) for every setting a settings class declares."""
    for field in dataclasses.fields(cls):
        spec = field.metadata.get("spec")
        if spec is not None:
            yield field.name, spec


def _raw_value(spec: Spec, environ: Mapping[str, str]) -> str | None:
    """The text of a setting; secrets may come from a file named by ``<VAR>_FILE``."""
    if spec.secret:
        file_var = spec.env + "_FILE"
        path = environ.get(file_var)
        if path and environ.get(spec.env):
            raise SettingsError(f"{spec.env} and {file_var} are both set: use one of them")
        if path:
            try:
                return Path(path).read_text().strip()
            except OSError as exc:
                raise SettingsError(f"{file_var}={path!r}: cannot read it ({exc.strerror})") from None
    return environ.get(spec.env)


def load(cls: type[T], environ: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """Build ``cls`` from ``environ`` (default: :func:`read_environment`).

    ``overrides`` set fields directly by their Python name (tests, CLI flags); they
    are not parsed.
    """
    if environ is None:
        environ = read_environment()
    # A variable a release replaced must not be silently ignored: the user meant it.
    for old, instead in getattr(cls, "RETIRED", {}).items():
        if old in environ:
            raise SettingsError(f"{old} is no longer read: {instead}")
    values: dict[str, Any] = {}
    for name, spec in specs(cls):
        if name in overrides:
            values[name] = overrides.pop(name)
            continue
        raw = _raw_value(spec, environ)
        if raw is None or (raw == "" and spec.default is not None):
            values[name] = spec.default
        else:
            values[name] = spec.parse(spec.env, raw)
    if overrides:
        raise TypeError(f"unknown settings for {cls.__name__}: {', '.join(sorted(overrides))}")
    instance = cls(**values)
    check = getattr(instance, "check", None)
    if check is not None:
        check()
    return instance


def load_mapping(cls: type[T], mapping: Mapping[str, Any], **overrides: Any) -> T:
    """Build ``cls`` from a mapping whose values may be text (parsed like environment
    variables) or already typed (taken as they are), as ``create_app(config)`` gets
    them. ``<VAR>_FILE`` entries name secret files, as in the environment."""
    text: dict[str, str] = {}
    typed: dict[str, Any] = {}
    for name, spec in specs(cls):
        if spec.env in mapping:
            value = mapping[spec.env]
            if isinstance(value, str):
                text[spec.env] = value
            else:
                typed[name] = value
    text.update({k: v for k, v in mapping.items() if k.endswith("_FILE") and isinstance(v, str)})
    typed.update(overrides)
    return load(cls, text, **typed)


def describe(cls: type) -> list[dict[str, str]]:
    """Rows of (variable, default, accepts, help) for docs and ``.env.example``."""
    rows = []
    for _name, spec in specs(cls):
        default = "" if spec.default is None else spec.default
        if isinstance(default, bool):
            default = "on" if default else "off"
        if isinstance(default, dict):
            default = ",".join(f"{k}={v}" for k, v in default.items())
        rows.append(
            {"env": spec.env, "default": str(default), "accepts": spec.accepts, "help": spec.help}
        )
    return rows
