"""Parse real Yosys / nextpnr output into the flow's report dict, and print it as a table.

Resources come from the synthesized netlist (Yosys ``write_json``): the cells of the top module, with
non-blackbox submodules expanded, i.e. the same per-type counts ``yosys stat`` prints for the design.

LUT4 counting (ECP5): ``LUT4`` is the number of *logic* LUT4 cells, exactly Yosys' ``stat`` ``LUT4``
line and nextpnr's "logic LUTs" line.  Carry chains are counted separately as ``CARRY`` (ECP5
``CCU2C`` cells); each ``CCU2C`` occupies two LUT4s of a slice, so ``LUT4_total = LUT4 + 2*CARRY`` is
nextpnr's "Total LUT4s" (without LUT-RAM) and is what the % of device column uses for LUTs.  On iCE40
an ``SB_CARRY`` shares a logic cell with an ``SB_LUT4`` that is already counted, so
``LUT4_total == LUT4``.  nextpnr's own post-packing counts (``TRELLIS_COMB`` slices halves, which also
include route-through LUTs it inserts, ``ICESTORM_LC`` ...) are kept under ``utilization``.

Timing comes from nextpnr's JSON report (``--report``): ``fmax[clk].achieved`` and
``critical_paths[*]`` (``from``/``to`` clock edges and a list of path segments with ``delay`` in ns).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .devices import device

__all__ = ["count_cells", "classify_resources", "parse_nextpnr_report", "format_report"]


def _load_json(src: dict | str | os.PathLike) -> dict:
    if isinstance(src, dict):
        return src
    with open(src) as f:
        return json.load(f)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        if value and set(value) <= {"0", "1"}:
            return int(value, 2) != 0
        return value not in ("", "0")
    return bool(value)


def count_cells(netlist: dict | str | os.PathLike, top: str | None = None) -> dict[str, int]:
    """Cell-type counts of the design in a Yosys JSON netlist (submodules expanded), sorted by type."""
    modules = _load_json(netlist).get("modules", {})
    if top is None:
        tops = [name for name, m in modules.items() if _truthy(m.get("attributes", {}).get("top", 0))]
        if len(tops) != 1:
            raise ValueError(f"cannot tell the top module of the netlist (candidates: {tops})")
        top = tops[0]
    if top not in modules:
        raise ValueError(f"top module {top!r} is not in the netlist")

    def is_leaf(mtype: str) -> bool:
        m = modules.get(mtype)
        return m is None or _truthy(m.get("attributes", {}).get("blackbox", 0))

    counts: dict[str, int] = {}

    def walk(name: str, mult: int, depth: int) -> None:
        if depth > 100:
            raise ValueError("netlist hierarchy too deep (recursive?)")
        for cell in modules[name].get("cells", {}).values():
            ctype = cell["type"]
            if is_leaf(ctype):
                counts[ctype] = counts.get(ctype, 0) + mult
            else:
                walk(ctype, mult, depth + 1)

    walk(top, 1, 0)
    return dict(sorted(counts.items()))


def _matches(ctype: str, patterns: list[str]) -> bool:
    return any(ctype.startswith(p[:-1]) if p.endswith("*") else ctype == p for p in patterns)


def classify_resources(cells: dict[str, int], target: str) -> dict[str, Any]:
    """Map raw cell counts onto ``LUT4``/``FF``/``DSP``/``BRAM``/``CARRY`` (+ ``LUT4_total``, ``cells``)."""
    dev = device(target)
    res: dict[str, Any] = {}
    for cls, patterns in dev["cells"].items():
        res[cls] = sum(n for t, n in cells.items() if _matches(t, patterns))
    res["LUT4_total"] = res["LUT4"] + dev["luts_per_carry"] * res["CARRY"]
    res["cells"] = dict(cells)
    return res


def _endpoint(point: dict | None) -> str:
    if not point:
        return "?"
    return f"{point.get('cell', '?')}.{point.get('port', '?')}"


def _clock_key(names, clock: str) -> str | None:
    """The nextpnr clock-net name for ``clock``: exact, else a derived net such as
    ``clk$SB_IO_IN_$glb_clk`` (iCE40) / ``$glbnet$clk$TRELLIS_IO_IN`` (ECP5), from I/O buffer and
    global buffer insertion when not out of context."""
    names = list(names)
    if clock in names:
        return clock
    derived = [n for n in names if n.removeprefix("$glbnet$").split("$", 1)[0] == clock]
    return derived[0] if len(derived) == 1 else None


def _summarize_path(cp: dict) -> dict[str, Any]:
    segments = cp.get("path", [])
    delay = sum(float(s.get("delay", 0.0)) for s in segments)
    routing = sum(float(s.get("delay", 0.0)) for s in segments if s.get("type") == "routing")
    return {
        "from": _endpoint(segments[0].get("from")) if segments else "?",
        "to": _endpoint(segments[-1].get("to")) if segments else "?",
        "delay_ns": round(delay, 3),
        "logic_ns": round(delay - routing, 3),
        "routing_ns": round(routing, 3),
        "domain": f"{cp.get('from', '?')} -> {cp.get('to', '?')}",
    }


def parse_nextpnr_report(report: dict | str | os.PathLike, clock: str = "clk") -> dict[str, Any]:
    """Timing and utilization from a nextpnr JSON report (``--report``).

    Returns ``{"clock", "fmax_mhz", "constraint_mhz", "timing_met", "clocks", "critical_path",
    "utilization"}``:

    * ``fmax_mhz``: achieved Fmax of ``clock`` (or of the net derived from it, see `_clock_key`),
      rounded to 0.01 MHz; ``None`` when nextpnr reports none (no register-to-register path);
    * ``timing_met``: nextpnr's own criterion, every constrained clock reaches its constraint;
    * ``critical_path``: the longest path launched and captured by ``clock`` (from/to as
      ``cell.port``, ``delay_ns``, ``logic_ns``, ``routing_ns``, ``domain``); when the clock has no
      register-to-register path, the longest path of any domain (e.g. ``<async> -> posedge clk``);
    * ``utilization``: nextpnr's BEL usage ``{bel: {"used", "available"}}``.
    """
    rep = _load_json(report)
    fmax = rep.get("fmax", {}) or {}
    paths = rep.get("critical_paths", []) or []
    edges = {e.split(" ", 1)[-1] for cp in paths for e in (cp.get("from", ""), cp.get("to", ""))
             if e.startswith(("posedge ", "negedge "))}
    key = _clock_key(fmax, clock) or _clock_key(sorted(edges), clock)
    clocks = {name: {"achieved_mhz": round(float(v["achieved"]), 2),
                     "constraint_mhz": float(v["constraint"])}
              for name, v in fmax.items()}
    timing_met = all(float(v["achieved"]) >= float(v["constraint"]) for v in fmax.values())

    critical = None
    if paths:
        in_domain = []
        edge_names = {clock} | ({key} if key else set())
        for cp in paths:
            src, dst = cp.get("from", ""), cp.get("to", "")
            if src.split(" ", 1)[-1] in edge_names and dst.split(" ", 1)[-1] in edge_names:
                in_domain.append(cp)
        summaries = [_summarize_path(cp) for cp in (in_domain or paths)]
        critical = max(summaries, key=lambda s: s["delay_ns"])

    return {
        "clock": key or clock,
        "fmax_mhz": clocks[key]["achieved_mhz"] if key in clocks else None,
        "constraint_mhz": clocks[key]["constraint_mhz"] if key in clocks else None,
        "timing_met": timing_met,
        "clocks": clocks,
        "critical_path": critical,
        "utilization": {bel: {"used": int(v["used"]), "available": int(v["available"])}
                        for bel, v in sorted((rep.get("utilization") or {}).items())},
    }


def _pct(used: int | None, avail: int | None) -> str:
    if used is None or not avail:
        return "-"
    return f"{100.0 * used / avail:.2f}%"


def format_report(report: dict) -> str:
    """A small aligned text table of a `synthesize` report (resources, Fmax, timing, critical path)."""
    res = report.get("resources", {})
    cap = report.get("capacity", {}) or {}
    ooc = " out-of-context" if report.get("out_of_context") else ""
    lines = [
        f"{report.get('top', '?')} on {report.get('target', '?')} "
        f"{report.get('device', '?')}-{report.get('package', '?')}{ooc}, "
        f"target {float(report.get('clock_mhz') or 0):.1f} MHz",
    ]
    rows: list[tuple[str, str, str, str]] = [("resource", "used", "of device", "util")]
    for name, key, cap_key in (("LUT4 (logic)", "LUT4", "LUT4"),
                               ("LUT4 (incl. carry)", "LUT4_total", "LUT4"),
                               ("CARRY", "CARRY", None),
                               ("FF", "FF", "FF"),
                               ("DSP", "DSP", "DSP"),
                               ("BRAM", "BRAM", "BRAM")):
        if key not in res:
            continue
        avail = cap.get(cap_key) if cap_key else None
        rows.append((name, str(res[key]), str(avail) if avail else "-", _pct(res[key], avail)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        lines.append("  " + "  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]))

    fmax = report.get("fmax_mhz")
    clock = report.get("clock", "clk")
    label_w = widths[0] + 2
    if fmax is None:
        lines.append(f"  {'Fmax':<{label_w}}n/a (no register-to-register path on {clock})")
    else:
        lines.append(f"  {'Fmax':<{label_w}}{fmax:.2f} MHz ({clock})")
    met = report.get("timing_met")
    lines.append(f"  {'timing met':<{label_w}}{'yes' if met else 'NO' if met is not None else '?'}"
                 f" (target {float(report.get('clock_mhz') or 0):.1f} MHz)")
    cp = report.get("critical_path")
    if cp:
        extra = ""
        if "logic_ns" in cp and "routing_ns" in cp:
            extra = f" (logic {cp['logic_ns']:.2f} ns, routing {cp['routing_ns']:.2f} ns)"
        lines.append(f"  {'critical path':<{label_w}}{cp['delay_ns']:.3f} ns{extra}")
        lines.append(f"  {'  from':<{label_w}}{cp['from']}")
        lines.append(f"  {'  to':<{label_w}}{cp['to']}")
    tools = report.get("tools") or {}
    if tools:
        lines.append(f"  {'tools':<{label_w}}" + ", ".join(str(tools[k]) for k in ("yosys", "nextpnr") if k in tools))
    return "\n".join(lines)
