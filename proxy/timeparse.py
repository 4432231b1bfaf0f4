"""Times and durations as the API accepts them: RFC 3339 or Unix seconds; 10s/5m/1h/1d."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from pgpulse.store.batch import PG_EPOCH_S, parse_rfc3339  # noqa: F401 - one definition
from proxy.errors import bad_request

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
# Times outside these bounds are certainly not meant (years 1970..2200): Unix seconds
# and RFC 3339 alike. They also keep every later step (a default start an hour
# before, a bucket's end) inside what datetime and PostgreSQL can represent.
MIN_UNIX = 0.0
MAX_UNIX = 7_258_118_400.0
MIN_TIME = datetime.fromtimestamp(MIN_UNIX, UTC)
MAX_TIME = datetime.fromtimestamp(MAX_UNIX, UTC)


def parse_time(raw: str, param: str) -> datetime:
    """A query parameter that is RFC 3339 or Unix seconds -> aware UTC datetime."""
    text = raw.strip()
    try:
        seconds = float(text)
    except ValueError:
        parsed = parse_rfc3339(text)
        if parsed is None:
            raise bad_request(f"{param}: expected RFC 3339 (2024-05-01T12:00:00Z) or Unix seconds",
                              parameter=param, value=raw[:100]) from None
        parsed = parsed.astimezone(UTC)
        if not MIN_TIME <= parsed <= MAX_TIME:
            raise bad_request(f"{param}: time out of range (1970-01-01 .. 2200-01-01)",
                              parameter=param, value=raw[:100]) from None
        return parsed
    if not math.isfinite(seconds) or not MIN_UNIX <= seconds <= MAX_UNIX:
        raise bad_request(f"{param}: Unix seconds out of range", parameter=param, value=raw[:100])
    return datetime.fromtimestamp(seconds, UTC)


def parse_duration(raw: str, param: str) -> timedelta:
    """``10s``, ``5m``, ``1h``, ``1d``, ``1w``, ``500ms`` or plain seconds -> timedelta (> 0)."""
    match = _DURATION.fullmatch(raw.strip())
    if not match:
        raise bad_request(f"{param}: expected a duration like 10s, 5m, 1h, 1d or seconds",
                          parameter=param, value=raw[:100])
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not 0.001 <= seconds <= 366 * 86400:
        raise bad_request(f"{param}: must be between 1ms and 366d", parameter=param, value=raw[:100])
    return timedelta(seconds=seconds)


def unix(t: datetime) -> float | int:
    """Unix seconds of ``t``, as an int when whole (how query points carry time)."""
    seconds = t.timestamp()
    return int(seconds) if seconds == int(seconds) else seconds
