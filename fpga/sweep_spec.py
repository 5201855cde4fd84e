"""Sweep files: a base design, a grid of values to expand, and run settings.

File format (TOML)
------------------
::

    [base]                          # a design config (gen/config.py), without per-point `name` rules
    name = "sw"                     # each point's Verilog module is "<name>_<8 hex of its hash>"
    [base.array]
    rows = 2
    cols = 2
    dataflow = "output_stationary"
    [base.sparsity]
    nm = "2:4"
    [base.pe]
    kind = "int"
    act_width = 8
    weight_width = 8
    acc_width = 32
    overflow = "wrap"

    [grid]                          # dotted design keys -> non-empty lists; the full product is run
    "array.rows" = [2, 4]
    "array.cols" = [2, 4]
    "sparsity.nm" = ["2:2", "2:4", "1:4"]

    [run]                           # optional table; every key optional
    targets = ["ecp5"]              # FPGA targets (fpga.TARGETS), default ["ecp5"]
    sim = false                     # also run a short cocotb regression per point
    sim_gemms = 2                   # random GEMMs of that regression, 1..16 (default 2)
    sim_stall = 0.3                 # stall probability of that regression, 0..1 (default 0.3)
    sim_seed = 1                    # its seed (default 1)
    clock_mhz = 120.0               # place-and-route target: sets base synth.clock_mhz
    pnr_seed = 1                    # nextpnr placement seed (default 1)
    workers = 2                     # LocalCluster worker processes, 1..64 (default 2)

``base`` may also be a string: the path of a design config file, relative to the sweep file.
Grid keys may be written quoted (``"array.rows" = [...]``) or as TOML dotted keys / subtables
(``array.rows = [...]``, ``[grid.array]``); both mean the same. Allowed grid keys are the design
keys of gen/config.py's schema, read from it (`GRID_KEYS`: ``array.rows``, ``array.cols``,
``array.dataflow``, ``sparsity.nm``, ``pe.*``, ``synth.clock_mhz``); ``name`` is not (each point
gets its own).

Grid values are not validated here: every point is validated with ``parse_config``, and a point
that is not a valid design is recorded as failed with its one-line ``ConfigError``. Problems of
the sweep file itself raise :class:`SweepError` (one line, naming the field).
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..gen import config as _cfg
from ..gen.config import Config, ConfigError, parse_config
from .devices import TARGETS

__all__ = ["SweepError", "Sweep", "Point", "load_sweep", "GRID_KEYS", "RUN_DEFAULTS"]

#: Design keys a grid may vary ("table.key").
GRID_KEYS: tuple[str, ...] = tuple(f"{t}.{k}" for t, keys in _cfg._TABLE_KEYS.items() for k in keys)

RUN_DEFAULTS: dict[str, Any] = {
    "targets": ["ecp5"],
    "sim": False,
    "sim_gemms": 2,
    "sim_stall": 0.3,
    "sim_seed": 1,
    "clock_mhz": None,
    "pnr_seed": 1,
    "workers": 2,
}
_TOP_KEYS = ("base", "grid", "run")


class SweepError(Exception):
    """An invalid sweep file. ``str()`` is one line: ``<source>: <field>: <problem>[; allowed: ...]``."""

    def __init__(self, source: str, field: str, problem: str, allowed: str | None = None):
        self.source, self.field, self.problem, self.allowed = (
            _one_line(source), _one_line(field), _one_line(problem),
            None if allowed is None else _one_line(allowed))
        msg = f"{self.source}: {self.field}: {self.problem}"
        if self.allowed:
            msg += f"; allowed: {self.allowed}"
        super().__init__(msg)

    def __str__(self) -> str:
        return self.args[0]


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


@dataclass
class Point:
    """One grid point. ``config`` is None when the point is not a valid design (``error`` says why)."""

    index: int
    values: dict[str, Any]          # grid key -> value, in grid order
    config: Config | None
    error: str | None = None

    @property
    def config_hash(self) -> str:
        return self.config.config_hash() if self.config is not None else ""

    @property
    def label(self) -> str:
        """Short label: pattern and shape first ("2:4 4x4"), then any other grid values."""
        v = self.values
        if self.config is not None:
            c = self.config
            parts = [c.nm, f"{c.rows}x{c.cols}"]
        else:
            parts = [str(v.get("sparsity.nm", "")),
                     f"{v.get('array.rows', '?')}x{v.get('array.cols', '?')}"]
        for key, value in v.items():
            if key not in ("sparsity.nm", "array.rows", "array.cols"):
                parts.append(f"{key.split('.')[-1]}={value}")
        return " ".join(p for p in parts if p)


@dataclass
class Sweep:
    path: Path
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    run: dict[str, Any]
    points: list[Point] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.base.get("name", self.path.stem))


def _toml_type(value: Any) -> str:
    return _cfg._toml_type(value)


def _flatten(table: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            if not value:
                out[full] = value  # reported as "expected a non-empty array"
            out.update(_flatten(value, full))
        else:
            out[full] = value
    return out


def _read_toml(path: Path, source: str, field: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise SweepError(source, field, f"file not found: {path}") from None
    except IsADirectoryError:
        raise SweepError(source, field, f"path is a directory: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(source, field, f"TOML syntax error in {path}: {exc}") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise SweepError(source, field, f"cannot read {path}: {exc}") from None


def _check_base(source: str, base: Any, path: Path) -> dict[str, Any]:
    if isinstance(base, str):
        base_path = (path.parent / base) if not os.path.isabs(base) else Path(base)
        base = _read_toml(base_path, source, "base")
    if not isinstance(base, Mapping):
        raise SweepError(source, "base", f"expected a table or a config file path, got {_toml_type(base)}",
                         "a design config table ([base], [base.array], ...) or a path string")
    # Structure only (values are checked per point, since the grid may override them).
    for key, value in base.items():
        if key not in _cfg._TOP_KEYS:
            raise SweepError(source, f"base.{key}", f"unknown key {key!r}",
                             "keys " + ", ".join(_cfg._TOP_KEYS))
        if key in _cfg._TABLE_KEYS:
            if not isinstance(value, Mapping):
                raise SweepError(source, f"base.{key}", f"expected a table, got {_toml_type(value)}")
            for sub in value:
                if sub not in _cfg._TABLE_KEYS[key]:
                    raise SweepError(source, f"base.{key}.{sub}", f"unknown key {sub!r}",
                                     "keys " + ", ".join(_cfg._TABLE_KEYS[key]))
    name = base.get("name")
    if not isinstance(name, str) or not _cfg._IDENT_RE.fullmatch(name) or name in _cfg.VERILOG_KEYWORDS:
        got = "missing" if name is None else repr(name)
        raise SweepError(source, "base.name", f"{got} is not a usable name prefix",
                         "a Verilog identifier [A-Za-z_][A-Za-z0-9_]* (points are named <name>_<hash>)")
    return copy.deepcopy(dict(base))


def _check_grid(source: str, grid: Any) -> dict[str, list[Any]]:
    if grid is None:
        raise SweepError(source, "grid", "missing [grid] table", "a table of design keys -> lists")
    if not isinstance(grid, Mapping):
        raise SweepError(source, "grid", f"expected a table, got {_toml_type(grid)}")
    flat = _flatten(grid)
    if not flat:
        raise SweepError(source, "grid", "empty grid: nothing to sweep", ", ".join(GRID_KEYS))
    out: dict[str, list[Any]] = {}
    for key, values in flat.items():
        field = f"grid.{key}"
        if key not in GRID_KEYS:
            raise SweepError(source, field, f"unknown grid key {key!r}", ", ".join(GRID_KEYS))
        if not isinstance(values, list) or not values:
            raise SweepError(source, field, f"expected a non-empty array, got "
                             f"{'an empty array' if values == [] else _toml_type(values)}")
        seen = []
        for value in values:
            if isinstance(value, (Mapping, list)):
                raise SweepError(source, field, f"expected scalar values, got {_toml_type(value)}")
            if any(type(value) is type(s) and value == s for s in seen):
                raise SweepError(source, field, f"duplicate value {value!r}")
            seen.append(value)
        out[key] = list(values)
    return out


def _check_run(source: str, run: Any) -> dict[str, Any]:
    if run is None:
        run = {}
    if not isinstance(run, Mapping):
        raise SweepError(source, "run", f"expected a table, got {_toml_type(run)}")
    for key in run:
        if key not in RUN_DEFAULTS:
            raise SweepError(source, f"run.{key}", f"unknown key {key!r}", "keys " + ", ".join(RUN_DEFAULTS))
    out = dict(RUN_DEFAULTS) | dict(run)

    def bad(key, problem, allowed):
        return SweepError(source, f"run.{key}", problem, allowed)

    targets = out["targets"]
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list) or not targets:
        raise bad("targets", f"expected a non-empty array, got {_toml_type(targets)}", ", ".join(TARGETS))
    for t in targets:
        if t not in TARGETS:
            raise bad("targets", f"unknown target {t!r}", ", ".join(TARGETS))
    out["targets"] = list(dict.fromkeys(targets))
    if not isinstance(out["sim"], bool):
        raise bad("sim", f"expected a boolean, got {_toml_type(out['sim'])}", "true, false")
    for key, lo, hi in (("sim_gemms", 1, 16), ("sim_seed", 0, 2**31 - 1), ("pnr_seed", 0, 2**31 - 1),
                        ("workers", 1, 64)):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise bad(key, f"{_toml_type(v)} is not allowed", f"integer {lo}..{hi}")
    stall = out["sim_stall"]
    if isinstance(stall, bool) or not isinstance(stall, (int, float)) or not 0 <= stall <= 1:
        raise bad("sim_stall", f"{_toml_type(stall)} is not allowed", "number 0..1")
    out["sim_stall"] = float(stall)
    clk = out["clock_mhz"]
    if clk is not None:
        lo, hi = _cfg.CLOCK_MHZ_RANGE
        if isinstance(clk, bool) or not isinstance(clk, (int, float)) or not (math.isfinite(clk) and lo <= clk <= hi):
            raise bad("clock_mhz", f"{_toml_type(clk)} is not allowed", f"number {lo:g}..{hi:g}")
        out["clock_mhz"] = float(clk)
    return out


def _expand(sweep: Sweep) -> list[Point]:
    source = str(sweep.path)
    base_name = sweep.base["name"]
    points: list[Point] = []
    seen: dict[str, int] = {}
    keys = list(sweep.grid)
    for index, combo in enumerate(itertools.product(*(sweep.grid[k] for k in keys))):
        values = dict(zip(keys, combo))
        mapping = copy.deepcopy(sweep.base)
        if sweep.run["clock_mhz"] is not None:
            mapping.setdefault("synth", {})["clock_mhz"] = sweep.run["clock_mhz"]
        for key, value in values.items():
            table, sub = key.split(".")
            mapping.setdefault(table, {})[sub] = value
        point_source = f"{source} point {index} ({', '.join(f'{k}={v!r}' for k, v in values.items())})"
        try:
            # The name is derived from the design (hash of the config under the base name) so it is
            # stable across sweep files and re-runs; the directory key is the final config's hash.
            provisional = parse_config(mapping, source=point_source)
            mapping["name"] = f"{base_name}_{provisional.config_hash()[:8]}"
            config = parse_config(mapping, source=point_source)
        except ConfigError as exc:
            points.append(Point(index, values, None, str(exc)))
            continue
        h = config.config_hash()
        if h in seen:
            raise SweepError(source, "grid", f"points {seen[h]} and {index} are the same design "
                             f"({', '.join(f'{k}={v!r}' for k, v in values.items())})")
        seen[h] = index
        points.append(Point(index, values, config))
    return points


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Read and check a sweep file and expand its grid into points; raises `SweepError`."""
    path = Path(path)
    source = os.fspath(path)
    data = _read_toml(path, source, "file")
    for key in data:
        if key not in _TOP_KEYS:
            raise SweepError(source, str(key), f"unknown top-level key {key!r}", ", ".join(_TOP_KEYS))
    if "base" not in data:
        raise SweepError(source, "base", "missing [base] design", "a design config table or a path string")
    sweep = Sweep(path=path, base=_check_base(source, data["base"], path),
                  grid=_check_grid(source, data.get("grid")), run=_check_run(source, data.get("run")))
    sweep.points = _expand(sweep)
    return sweep
