"""Temperature and fan probes, from the source's /sys (hwmon, then thermal zones).

psutil.sensors_temperatures() and sensors_fans() read the fixed /sys; these read
the same files (the same way) under COLLECTOR_SYS_PATH, so container mode and
tests see the host's. Most VMs and containers have no sensors: the probe is then
skipped with one warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collector.probes import ProbeUnavailable, SampleContext, r
from collector.source import read_text


def _optional(path: Path) -> str | None:
    try:
        return read_text(path).strip() or None
    except OSError:
        return None


def _milli(path: Path) -> float | None:
    text = _optional(path)
    try:
        return None if text is None else int(text) / 1000
    except ValueError:
        return None


def _hwmon_inputs(sys_root: Path, kind: str) -> list[tuple[str, Path]]:
    """(chip name, input file) of every ``<kind>N_input`` under class/hwmon."""
    found = []
    hwmon = sys_root / "class" / "hwmon"
    if not hwmon.is_dir():
        return found
    for chip in sorted(hwmon.iterdir()):
        inputs = sorted(chip.glob(f"{kind}*_input")) or sorted(chip.glob(f"device/{kind}*_input"))
        name = _optional(chip / "name") or _optional(chip / "device" / "name") or chip.name
        found.extend((name, p) for p in inputs)
    return found


class _SensorProbe:
    kind = ""

    def __init__(self) -> None:
        self._inputs: list[tuple[str, Path]] | None = None

    def _discover(self, ctx: SampleContext) -> list[tuple[str, Path]]:
        # Sensors do not come and go: find them once, look again only when one vanished.
        if self._inputs is None:
            self._inputs = _hwmon_inputs(ctx.source.sys, self.kind)
        return self._inputs

    def _read_all(self, ctx: SampleContext, entry) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for chip, path in self._discover(ctx):
            try:
                raw = read_text(path).strip()
            except FileNotFoundError:
                self._inputs = None
                continue
            except OSError:
                continue  # a sensor that cannot be read right now (EIO, ENODATA)
            base = path.name[: -len("_input")]
            item = entry(path, base, raw)
            if item is not None:
                out.setdefault(chip, []).append(item)
        return out


class TemperatureProbe(_SensorProbe):
    name = "temperatures"
    kind = "temp"

    def read(self, ctx: SampleContext) -> dict[str, Any]:
        def entry(path: Path, base: str, raw: str) -> dict[str, Any] | None:
            try:
                current = int(raw) / 1000
            except ValueError:
                return None
            item: dict[str, Any] = {
                "label": _optional(path.with_name(base + "_label")) or base,
                "current": r(current, 1),
            }
            for field, suffix in (("high", "_max"), ("critical", "_crit")):
                value = _milli(path.with_name(base + suffix))
                if value is not None:
                    item[field] = r(value, 1)
            return item

        temps = self._read_all(ctx, entry)
        if not temps:
            temps = self._thermal_zones(ctx)
        if not temps:
            raise ProbeUnavailable(f"no temperature sensors under {ctx.source.sys}/class")
        return {"temperatures": temps}

    @staticmethod
    def _thermal_zones(ctx: SampleContext) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        thermal = ctx.source.sys / "class" / "thermal"
        if not thermal.is_dir():
            return out
        for zone in sorted(thermal.glob("thermal_zone*")):
            current = _milli(zone / "temp")
            if current is not None:
                name = _optional(zone / "type") or zone.name
                out.setdefault(name, []).append({"label": zone.name, "current": r(current, 1)})
        return out


class FanProbe(_SensorProbe):
    name = "fans"
    kind = "fan"

    def read(self, ctx: SampleContext) -> dict[str, Any]:
        def entry(path: Path, base: str, raw: str) -> dict[str, Any] | None:
            try:
                rpm = int(raw)
            except ValueError:
                return None
            return {"label": _optional(path.with_name(base + "_label")) or base, "rpm": rpm}

        fans = self._read_all(ctx, entry)
        if not fans:
            raise ProbeUnavailable(f"no fan sensors under {ctx.source.sys}/class/hwmon")
        return {"fans": fans}
