"""Parse real Yosys / nextpnr output into the flow's report dict, and print it as a table.

Resources come from the synthesized netlist (Yosys ``write_json``): the cells of the top module, with
non-blackbox submodules expanded, i.e. the same per-type counts ``yosys stat`` prints for the design.

LUT4 counting: ``LUT4_total`` is the fabric LUT4s the design occupies, the sum of ``LUT4_kinds``
(the device table's ``lut4_kinds``).  On ECP5 it equals nextpnr-ecp5's "Total LUT4s" line and each
kind its line below that: ``logic`` (the ``LUT4`` cells, Yosys' ``stat``), ``carry`` (2 per
``CCU2C``), ``ram`` (4 per ``TRELLIS_DPR16X4`` distributed RAM) and ``ramw`` (its 2 write-port
LUTs).  ``CARRY`` and ``LUTRAM`` are the carry and distributed-RAM cell counts.  On iCE40 an
``SB_CARRY`` shares a logic cell with an ``SB_LUT4`` that is already counted, so
``LUT4_total == LUT4``.  Gowin (``synth_gowin``): ``LUT1``..``LUT4`` are the logic LUTs, each ``ALU``
(carry) cell is one more LUT4 of the fabric in ALU mode; ``RAM16SDP4`` shadow RAMs are ``LUTRAM``
cells; the ``MUX2_LUT5..8`` wide-function muxes are not LUTs and are listed under ``cells`` only.

What nextpnr itself counted is read from its log (`nextpnr_log_counts`) into the report's
``placed``: the BELs of the device's resource kinds (``capacity_bels``: ``TRELLIS_COMB``,
``ICESTORM_LC``, ``LUT4`` ...) used / available in the placed design (through the register harness:
the whole harness design, e.g. the iCE40 logic cells ``ICESTORM_LC`` that a UP5K user has to
fit), and on ECP5 its "Total LUT4s" breakdown (``lut4``).

Timing comes from nextpnr's JSON report (``--report``): ``fmax[clk].achieved`` and
``critical_paths[*]`` (``from``/``to`` clock edges and a list of path segments with ``delay`` in ns
and a ``type``: ``clk-to-q``/``source``, ``routing``, ``logic``, ``setup``).  The critical path's
``logic_levels`` is the number of its ``logic`` segments, i.e. the cells the signal passes through
between the launching and the capturing register, as nextpnr lists them: a DSP block, each LUT, and
each step of a carry chain (an ECP5 ``CCU2C`` is two steps, one per half); ``carry_levels`` is how
many of them are carry-chain steps (a segment entering at a carry input or leaving at a carry
output: ``FCI``/``FCO``, ``CIN``/``COUT``, ``CI``/``CO``).

`device_utilization` turns the resources into counts and percentages of the chosen device (the
device table's ``capacity``): ``LUT4`` (``LUT4_total``, carry included), ``FF``, ``DSP`` (in the
device's DSP units, see ``dsp_units`` in `nmforge.fpga.devices`), ``BRAM`` and ``IO`` (the package
pins the placed design uses, from nextpnr's report; none out of context).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .devices import device

__all__ = ["count_cells", "classify_resources", "parse_nextpnr_report", "format_report", "dsp_units",
           "device_utilization", "fit_problems", "logic_levels", "overused_bels", "utilisation_table", "nextpnr_log_counts",
           "placed_utilization", "CARRY_PORTS"]

# Carry-chain ports of the families' carry cells: ECP5 CCU2C (FCI/FCO), iCE40 SB_CARRY / logic cell
# (CIN/COUT, CI/CO), Gowin ALU (CIN/COUT).
CARRY_PORTS = frozenset({"FCI", "FCO", "CIN", "COUT", "CI", "CO"})


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


def classify_resources(cells: dict[str, int], target: str | dict) -> dict[str, Any]:
    """Map raw cell counts onto ``LUT4``/``CARRY``/``LUTRAM``/``FF``/``DSP``/``BRAM`` cell counts, plus
    ``LUT4_kinds`` (fabric LUT4s per kind, see the module docstring), ``LUT4_total`` (their sum) and
    ``cells`` (the raw counts).

    ``target``: a target name (its default device) or a device-table entry (`nmforge.fpga.devices.device`)."""
    dev = device(target) if isinstance(target, str) else target
    res: dict[str, Any] = {}
    for cls, patterns in dev["cells"].items():
        res[cls] = sum(n for t, n in cells.items() if _matches(t, patterns))
    res["LUT4_kinds"] = {kind: per_cell * res[cls] for kind, (cls, per_cell) in dev["lut4_kinds"].items()}
    res["LUT4_total"] = sum(res["LUT4_kinds"].values())
    res["cells"] = dict(cells)
    return res


def dsp_units(cells: dict[str, int], dev: dict) -> int:
    """DSP use of ``cells`` in the device's DSP units (``dsp_units``; 1 per DSP cell by default)."""
    units = dev.get("dsp_units") or {}
    return sum(n * units.get(t, 1) for t, n in cells.items() if _matches(t, dev["cells"]["DSP"]))


def _percent(used: int | None, available: int | None) -> float | None:
    if used is None or not available:
        return None
    return round(100.0 * used / available, 2)


def device_utilization(resources: dict, dev: dict, utilization: dict | None = None, *,
                       out_of_context: bool = False) -> dict[str, dict[str, Any]]:
    """Use of each resource kind as ``{"used", "available", "percent"}`` of the device ``dev``.

    ``resources`` is a `classify_resources` result (with its ``cells``); ``LUT4`` counts
    ``LUT4_total`` (logic + carry LUTs), ``DSP`` the device's DSP units (``unit`` names them),
    ``IO`` the pins used by the placed design, from nextpnr's BEL ``utilization`` (``None`` out of
    context, where nothing is placed on pins).  ``available`` is the device table's ``capacity``;
    ``percent`` (2 decimals) is ``None`` where the device has none of a kind (iCE40 HX8K: DSP).
    """
    cap = dev.get("capacity") or {}
    used: dict[str, int | None] = {
        "LUT4": resources.get("LUT4_total"),
        "FF": resources.get("FF"),
        "DSP": dsp_units(resources.get("cells") or {}, dev),
        "BRAM": resources.get("BRAM"),
        "IO": None,
    }
    io_bel = (dev.get("capacity_bels") or {}).get("IO")
    if not out_of_context and utilization is not None and io_bel in utilization:
        used["IO"] = int(utilization[io_bel]["used"])
    out: dict[str, dict[str, Any]] = {}
    for kind in ("LUT4", "FF", "DSP", "BRAM", "IO"):
        entry: dict[str, Any] = {"used": used[kind], "available": cap.get(kind),
                                 "percent": _percent(used[kind], cap.get(kind))}
        if kind == "DSP":
            entry["unit"] = dev.get("dsp_unit", "DSP")
        out[kind] = entry
    return out


def fit_problems(resources: dict, dev: dict) -> list[str]:
    """What of ``resources`` (a whole placed design) exceeds the device's capacity, as phrases such as
    ``"32 DSP (SB_MAC16) where the device has 8"``; empty when each kind fits.  Checked: LUT4 (carry included), FF, DSP
    units and BRAM; each is a necessary condition (packing can only need more)."""
    cap = dev.get("capacity") or {}
    unit = dev.get("dsp_unit", "DSP")
    need = [("LUT4", resources.get("LUT4_total"), "LUT4"), ("FF", resources.get("FF"), "FF"),
            ("DSP", dsp_units(resources.get("cells") or {}, dev), f"DSP ({unit})"),
            ("BRAM", resources.get("BRAM"), "BRAM")]
    return [f"{n} {label} where the device has {cap[kind]}" for kind, n, label in need
            if n is not None and kind in cap and n > cap[kind]]


_UTIL_LINE = re.compile(r"^Info:\s+(\S+):\s+(\d+)/\s*(\d+)\s+\d+%")
# nextpnr-ecp5's "Logic utilisation before packing" lines and the report's LUT4 kind of each.
_ECP5_LUT_LINES = {"Total LUT4s": "total", "logic LUTs": "logic", "carry LUTs": "carry",
                   "RAM LUTs": "ram", "RAMW LUTs": "ramw"}
_ECP5_LUT_LINE = re.compile(r"^Info:\s+(" + "|".join(_ECP5_LUT_LINES) + r"):\s+(\d+)/\s*(\d+)")


def utilisation_table(log_text: str) -> dict[str, tuple[int, int]]:
    """nextpnr's last "Device utilisation" table of a log: ``{bel: (used, available)}``."""
    table: dict[str, tuple[int, int]] = {}
    for ln in log_text.splitlines():
        if ln.startswith("Info: Device utilisation:"):
            table = {}
            continue
        m = _UTIL_LINE.match(ln)
        if m:
            table[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return table


def overused_bels(log_text: str) -> list[tuple[str, int, int]]:
    """``(bel, used, available)`` of nextpnr's last "Device utilisation" table where used > available."""
    return [(bel, u, a) for bel, (u, a) in utilisation_table(log_text).items() if u > a]


def nextpnr_log_counts(log_text: str) -> dict[str, Any]:
    """What nextpnr printed about the design's size: ``bels`` (its last "Device utilisation" table,
    ``{bel: (used, available)}``) and ``lut4`` (nextpnr-ecp5's "Total LUT4s" breakdown,
    ``{"total", "logic", "carry", "ram", "ramw"}``; empty for the other flavours, which print none)."""
    lut4: dict[str, int] = {}
    for ln in log_text.splitlines():
        m = _ECP5_LUT_LINE.match(ln)
        if m:
            lut4[_ECP5_LUT_LINES[m.group(1)]] = int(m.group(2))
    return {"bels": utilisation_table(log_text), "lut4": lut4}


def placed_utilization(log_text: str, dev: dict) -> dict[str, dict[str, Any]]:
    """The placed design's use of the device's resource BELs (``capacity_bels``) as nextpnr's log
    reports it: ``{bel: {"used", "available", "percent"}}`` (with the register harness: the whole
    harness design, e.g. ``ICESTORM_LC``, the iCE40 logic cells a UP5K has 5280 of)."""
    table = utilisation_table(log_text)
    out: dict[str, dict[str, Any]] = {}
    for bel in dict.fromkeys((dev.get("capacity_bels") or {}).values()):
        if bel in table:
            used, avail = table[bel]
            out[bel] = {"used": used, "available": avail, "percent": _percent(used, avail)}
    return out


def _endpoint(point: dict | None) -> str:
    if not point:
        return "?"
    return f"{point.get('cell', '?')}.{point.get('port', '?')}"


def _clock_key(names, clock: str) -> str | None:
    """The nextpnr clock-net name for ``clock``: exact, else a derived net such as
    ``clk$SB_IO_IN_$glb_clk`` (iCE40) / ``$glbnet$clk$TRELLIS_IO_IN`` (ECP5) / ``$iopadmap$clk``
    (Gowin), from I/O buffer and global buffer insertion when not out of context."""
    names = list(names)
    if clock in names:
        return clock
    derived = [n for n in names
               if n.removeprefix("$glbnet$").removeprefix("$iopadmap$").split("$", 1)[0] == clock]
    return derived[0] if len(derived) == 1 else None


def logic_levels(segments: list[dict]) -> tuple[int, int]:
    """``(logic_levels, carry_levels)`` of a nextpnr critical path (its ``path`` segments): the number
    of ``logic`` segments, and how many of them are carry-chain steps (see the module docstring)."""
    logic = [s for s in segments if s.get("type") == "logic"]
    carry = [s for s in logic
             if (s.get("from") or {}).get("port") in CARRY_PORTS or (s.get("to") or {}).get("port") in CARRY_PORTS]
    return len(logic), len(carry)


def _summarize_path(cp: dict) -> dict[str, Any]:
    segments = cp.get("path", [])
    delay = sum(float(s.get("delay", 0.0)) for s in segments)
    routing = sum(float(s.get("delay", 0.0)) for s in segments if s.get("type") == "routing")
    levels, carry = logic_levels(segments)
    return {
        "from": _endpoint(segments[0].get("from")) if segments else "?",
        "to": _endpoint(segments[-1].get("to")) if segments else "?",
        "delay_ns": round(delay, 3),
        "logic_ns": round(delay - routing, 3),
        "routing_ns": round(routing, 3),
        "logic_levels": levels,
        "carry_levels": carry,
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
      ``cell.port``, ``delay_ns``, ``logic_ns`` (clock-to-out, cells and setup), ``routing_ns``,
      ``logic_levels``, ``carry_levels``, ``domain``); when the clock has no
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
    """A small aligned text table of a `synthesize` report (resources with counts and % of the device,
    Fmax, timing, critical path with its logic levels)."""
    res = report.get("resources", {})
    cap = report.get("capacity", {}) or {}
    du = report.get("device_utilization") or {}
    ooc = " out-of-context" if report.get("out_of_context") else ""
    name = f"{report.get('device', '?')}-{report.get('package', '?')}"
    extra = [x for x in (report.get("part"), report.get("board")) if x and x != report.get("device")]
    if extra:
        name += f" ({', '.join(extra)})"
    lines = [
        f"{report.get('top', '?')} on {report.get('target', '?')} {name}{ooc}, "
        f"target {float(report.get('clock_mhz') or 0):.1f} MHz",
    ]

    def avail_of(kind: str):
        if kind in du:
            return du[kind].get("available")
        return cap.get(kind)

    rows: list[tuple[str, str, str, str]] = [("resource", "used", "of device", "util")]
    if "LUT4_total" in res:
        rows.append(("LUT4 total", str(res["LUT4_total"]), str(avail_of("LUT4") or "-"),
                     _pct(res["LUT4_total"], avail_of("LUT4"))))
    cell_notes = {"carry": ("CARRY", "carry cells"), "ram": ("LUTRAM", "distributed RAMs")}
    for kind, luts in (res.get("LUT4_kinds") or {}).items():
        label = f"  {kind}"
        if kind in cell_notes and res.get(cell_notes[kind][0]):
            label += f" ({res[cell_notes[kind][0]]} {cell_notes[kind][1]})"
        rows.append((label, str(luts), "", ""))
    if res.get("LUTRAM") and "ram" not in (res.get("LUT4_kinds") or {}):
        rows.append(("LUTRAM cells", str(res["LUTRAM"]), "-", "-"))
    for label, key, kind in (("FF", "FF", "FF"), ("DSP", "DSP", "DSP"), ("BRAM", "BRAM", "BRAM")):
        if key not in res:
            continue
        used = res[key]
        if kind == "DSP" and "DSP" in du and du["DSP"].get("used") not in (None, used):
            used = du["DSP"]["used"]
            label = f"DSP ({du['DSP'].get('unit', 'unit')} units)"
        avail = avail_of(kind) if kind else None
        rows.append((label, str(used), str(avail) if avail else "-", _pct(used, avail)))
    io = du.get("IO") or {}
    if io.get("used") is not None:
        rows.append(("IO (pins)", str(io["used"]), str(io.get("available") or "-"),
                     _pct(io["used"], io.get("available"))))
    placed = report.get("placed") or {}
    if placed and report.get("harness"):
        rows.append(("placed design (harness incl.), nextpnr:", "", "", ""))
        for bel, entry in placed.items():
            rows.append((f"  {bel}", str(entry["used"]), str(entry["available"]),
                         _pct(entry["used"], entry["available"])))
    widths = [max(len(r[i]) for r in rows if any(r[1:])) for i in range(4)]
    for r in rows:
        if not any(r[1:]):  # a heading row
            lines.append("  " + r[0])
            continue
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
        split = ""
        if "logic_ns" in cp and "routing_ns" in cp:
            split = f" (logic {cp['logic_ns']:.2f} ns, routing {cp['routing_ns']:.2f} ns)"
        lines.append(f"  {'critical path':<{label_w}}{cp['delay_ns']:.3f} ns{split}")
        lines.append(f"  {'  from':<{label_w}}{cp['from']}")
        lines.append(f"  {'  to':<{label_w}}{cp['to']}")
        if "logic_levels" in cp:
            carry = cp.get("carry_levels") or 0
            lines.append(f"  {'  logic levels':<{label_w}}{cp['logic_levels']}"
                         + (f" ({carry} of them carry-chain steps)" if carry else ""))
    if report.get("timing_note"):
        lines.append(f"  {'note':<{label_w}}{report['timing_note']}")
    tools = report.get("tools") or {}
    if tools:
        lines.append(f"  {'tools':<{label_w}}" + ", ".join(str(tools[k]) for k in ("yosys", "nextpnr") if k in tools))
    return "\n".join(lines)
