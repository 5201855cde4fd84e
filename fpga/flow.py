"""FPGA flow: Verilog -> Yosys (synth_ecp5 / synth_ice40 / synth_gowin) -> nextpnr -> report.json.

Public API::

    synthesize(verilog, top, target, out_dir, *, clock_mhz=120.0, out_of_context=True, seed=1,
               harness=None, ports=None, device=None, log=print) -> dict
                                         # run the flow, write out_dir/report.json, return the report
    format_report(report) -> str         # aligned text table of a report
    TARGETS, DEVICES                     # supported targets and their data-driven device table
    FlowError                            # a tool failed, or the design does not fit the device;
                                         # str(e) is one line naming tool / resource, error, log

Targets and devices (`nmforge.fpga.devices`): ``ecp5`` (LFE5U-25F / 45F / 85F, CABGA381; default
85F), ``ice40`` (iCE40UP5K SG48, default; iCE40HX8K CT256, no DSP blocks: multipliers in LUTs) and
``gowin`` (GW2A-18 of the Tang Primer 20K, default; GW1NR-9 of the Tang Nano 9K), the last placed
by nextpnr-himbaechel-gowin (``--device PART --vopt family=...``).

Files written to ``out_dir``: ``<top>.v`` (when Verilog text was given), ``synth.ys`` (the Yosys
script), ``yosys.log``, ``stat.json`` (``yosys stat -json`` of the netlist that is placed, i.e. after
the ECP5 register packing into DSP and block RAM registers, recounted by ``stat_packed.ys`` /
``yosys_stat.log``; ``flatten.ys`` / ``yosys_flatten.log`` when a netlist with block RAMs was
flattened for it),
``netlist.json`` (synthesized netlist), ``nextpnr.log``, ``nextpnr_report.json`` (nextpnr
``--report``) and ``report.json``; with the register harness also ``<top>_harness.v`` (and, on
Gowin, whose nextpnr needs every I/O on a pin, ``<top>_harness.cst``).

Register harness (`nmforge.fpga.harness`): a target whose nextpnr has no out-of-context mode
(iCE40, Gowin; device-table field ``"harness": True``) places a block with hundreds of I/O bits by wrapping
it in ``<top>_harness`` (ports ``clk``, ``rst``, ``din``, ``dout``): inputs from a serial shift
register, outputs captured and XOR-folded into ``dout``, all register to register.  ``top`` keeps its
own module (``keep_hierarchy``), so the reported resources are the cells of ``top`` alone; the
harness' own cells are reported separately (``harness_resources``); Fmax is the whole design's.

Command line: ``python -m nmforge.fpga design.v TOP {ecp5,ice40,gowin} OUT_DIR [--device D]
[--clock-mhz F]``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from .devices import DEVICES, TARGETS, device as device_entry, device_names
from .bram_pack import pack_bram_output_registers
from .dsp_pack import pack_mult_registers
from .harness import harness_instance_type, harness_verilog, normalize_ports, ports_from_verilog
from .report import (classify_resources, count_cells, device_utilization, fit_problems,
                     format_report as _format_report, nextpnr_log_counts, parse_nextpnr_report,
                     overused_bels, placed_utilization, utilisation_table)
from .zero_init import strip_zero_memory_init
from .tools import FlowError, package_version, run_tool, tool_path, tool_version, yosys_data_file

__all__ = ["synthesize", "format_report", "FlowError", "TARGETS", "DEVICES"]

VerilogInput = str | os.PathLike | Iterable[str | os.PathLike]


def _sources(verilog: VerilogInput, top: str, out_dir: Path) -> list[Path]:
    """Verilog files to read: a path, a list of paths, or Verilog source text (written to out_dir)."""
    if isinstance(verilog, os.PathLike):
        paths = [Path(verilog)]
    elif isinstance(verilog, str):
        if "\n" not in verilog and "module" not in verilog:  # a path, not source text
            paths = [Path(verilog)]
        else:
            src = out_dir / f"{top}.v"
            src.write_text(verilog if verilog.endswith("\n") else verilog + "\n")
            paths = [src]
    else:
        paths = [Path(p) for p in verilog]
    if not paths:
        raise ValueError("no Verilog given")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"Verilog file not found: {p}")
    return paths


def _without_zero_memory_init(sources: list[Path], out_dir: Path, say: Callable[[str], Any]) -> list[Path]:
    """The sources Yosys reads: a file with large all-zero memory initializers is replaced by a copy
    without them, ``out_dir/<stem>.synth.v`` (`nmforge.fpga.zero_init`: the device's own power-up
    state, minutes of Yosys' Verilog frontend saved)."""
    result = []
    for src in sources:
        text, removed = strip_zero_memory_init(src.read_text(errors="replace"))
        if removed:
            copy = out_dir / f"{src.stem}.synth.v"
            copy.write_text(text)
            say(f"[synth] {src.name}: {removed} all-zero memory initializers left to the device's "
                f"power-up state ({copy.name})")
            src = copy
        result.append(src)
    return result


def _top_ports(ports: Any, sources: list[Path], top: str) -> list[dict[str, Any]]:
    """Ports of ``top``: the given list / manifest, else read from the Verilog file defining ``top``."""
    if ports is not None:
        return normalize_ports(ports)
    for src in sources:
        text = src.read_text(errors="replace")
        try:
            return ports_from_verilog(text, top)
        except ValueError as e:
            if "not found" not in str(e):
                raise ValueError(f"{src}: {e}") from None
    raise ValueError(f"module {top!r} not found in {', '.join(str(s) for s in sources)}; "
                     f"pass ports= (e.g. the manifest)")


def uses_harness(target: str, *, out_of_context: bool = True, harness: bool | None = None) -> bool:
    """Whether `synthesize` wraps the design in the register harness: when asked (``harness=True``),
    or by default (``harness=None``) when out of context is asked for and the target runs that
    through the harness (device-table field ``harness``, default: the target has no out-of-context
    mode)."""
    if harness is not None:
        return bool(harness)
    dev = device_entry(target)
    return bool(out_of_context and dev.get("harness", dev["ooc_args"] is None))


def _quote(arg: str) -> str:
    if '"' in arg:
        raise ValueError(f"path with a double quote is not supported: {arg!r}")
    return f'"{arg}"'


def _pack_block_registers(out: Path, dev: dict, design_top: str, log) -> dict | None:
    """Run the device's register-packing netlist passes (ECP5: `dsp_pack` into MULT18X18D inputs,
    `bram_pack` into DP16KD outputs), rewriting ``out/netlist.json``; the counts of what moved.
    A netlist with block RAMs is flattened first (Yosys ``flatten``: modules kept with
    ``keep_hierarchy`` stay), since a read register sits in another module than its block."""
    if not (dev.get("pack_dsp_registers") or dev.get("pack_bram_registers")):
        return None
    netlist_path = out / "netlist.json"
    with open(netlist_path) as f:
        netlist = json.load(f)
    if dev.get("pack_bram_registers") and count_cells(netlist, design_top).get("DP16KD"):
        (out / "flatten.ys").write_text("# generated by nmforge.fpga.flow: one module for bram_pack\n"
                                        f"read_json netlist.json\nhierarchy -top {design_top}\nflatten\n"
                                        "delete t:$scopeinfo\nwrite_json netlist.json\n")
        run_tool("yosys", ["-q", "-l", "yosys_flatten.log", "-s", "flatten.ys"], cwd=out,
                 log_file=out / "yosys_flatten.log", progress=log)
        with open(netlist_path) as f:
            netlist = json.load(f)
    stats = {}
    if dev.get("pack_dsp_registers"):
        stats["dsp"] = pack_mult_registers(netlist)
    if dev.get("pack_bram_registers"):
        stats["bram"] = pack_bram_output_registers(netlist)
    with open(netlist_path, "w") as f:
        json.dump(netlist, f)
    return stats


def _pin_constraints(dev: dict, harness_ports: list[dict[str, Any]], clock: str, reset: str | None,
                     out: Path, design_top: str) -> list[str]:
    """Write the pin constraint file of a family that needs every I/O constrained (Gowin ``.cst``) for
    the harness' ports, from the device's ``pins`` (roles ``clock``/``reset``/``din``/``dout``);
    return the nextpnr options naming it ([] when the family needs none)."""
    spec = dev.get("pin_constraints")
    if not spec:
        return []
    pins = dev.get("pins") or {}
    roles = {clock: "clock", "din": "din", "dout": "dout"}
    if reset:
        roles[reset] = "reset"
    lines = [f"// pins of {design_top} on {dev['device']} ({dev.get('board') or dev['package']}), "
             f"written by nmforge.fpga.flow"]
    for p in harness_ports:
        role = roles.get(p["name"])
        if role is None or role not in pins:
            raise FlowError(f"no pin for port {p['name']!r} of {design_top} on {dev['device']}: "
                            f"the device table gives pins for {', '.join(sorted(pins)) or 'none'}")
        lines.append(f'IO_LOC "{p["name"]}" {pins[role]};')
    if spec.get("format") != "cst":
        raise ValueError(f"unsupported pin constraint format {spec.get('format')!r}")
    path = out / f"{design_top}.cst"
    path.write_text("\n".join(lines) + "\n")
    return [a.format(path=tool_path(path, out)) for a in spec["args"]]


def _fullest_bels(log_text: str, dev: dict, n: int = 2) -> list[tuple[str, int, int]]:
    """The ``n`` most used of the device's resource BELs (``capacity_bels``) in nextpnr's log."""
    table = utilisation_table(log_text)
    bels = dict.fromkeys(dev.get("capacity_bels", {}).values())
    rows = [(bel, *table[bel]) for bel in bels if bel in table and table[bel][1] > 0]
    return sorted(rows, key=lambda r: r[1] / r[2], reverse=True)[:n]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _does_not_fit(dev: dict, what: str, detail: str = "") -> FlowError:
    return FlowError(f"design does not fit {dev['device']}-{dev['package']}: it needs {what}{detail}")


def synthesize(verilog: VerilogInput, top: str, target: str, out_dir: str | os.PathLike, *,
               clock_mhz: float = 120.0, out_of_context: bool = True, seed: int = 1,
               clock: str = "clk", detailed_timing: bool = False, harness: bool | None = None,
               ports: Any = None, reset: str | None = "rst", device: str | None = None,
               log: Callable[[str], Any] | None = print) -> dict[str, Any]:
    """Synthesize, place and route ``top`` for ``target`` (one of `TARGETS`) and report on it.

    ``device`` picks the device of the target (a name or alias of `nmforge.fpga.devices`, e.g.
    ``"LFE5U-25F"``, ``"iCE40HX8K"``, ``"GW1NR-9"``; default: the target's default device);
    ``ValueError`` for one the target does not have.  ``verilog`` is a Verilog file path, a list of
    paths, or Verilog source text.  ``out_of_context`` places and routes without I/O buffers or
    package pins (ECP5 ``--out-of-context``; a bare array has more I/O than any package has pins);
    nextpnr-ice40 and nextpnr-himbaechel-gowin have no such mode, so there the block is placed inside
    the register harness instead (see ``harness``) and the report says
    ``"out_of_context": false, "harness": true``.  ``clock`` names the clock port
    whose Fmax is reported (Amaranth's default domain: ``clk``).  ``log`` gets one result line per
    step and, while Yosys and nextpnr run, their phase with the elapsed time (on each phase change
    after 5 s, at least every 20 s; `nmforge.fpga.tools.run_tool`) (``None`` for silence).  Timing failure is reported (``timing_met: false``), not raised;
    a failing tool raises `FlowError`, and so does a design that needs more of a resource than the
    device has (one line naming the resource, e.g. ``design does not fit iCE40UP5K-SG48: it needs
    32 DSP (SB_MAC16) of 8``), checked on the synthesized netlist before place and route.

    ``harness``: wrap ``top`` in the register harness of `nmforge.fpga.harness` and place that
    (4 pins: ``clock``, ``reset``, ``din``, ``dout``; on Gowin on the device table's ``pins``).
    ``None`` (default) uses it when ``out_of_context`` is asked for and the target cannot run out of
    context (iCE40, Gowin: device-table field ``harness``); ``True`` forces it on any target;
    ``False`` never (iCE40 then puts every I/O bit on a package pin).  ``ports`` lists top's ports
    (``[{name, direction, width}]`` or a generated block's manifest); default: read from the Verilog
    declaring ``top``.  ``reset`` is top's reset port, driven from a harness pin.  With the harness,
    ``resources`` counts the cells of ``top``'s module alone (kept as its own module by
    ``keep_hierarchy``), ``harness_resources`` the harness' own, and ``fmax_mhz`` is the whole placed
    design's (the harness adds only register-to-register paths of at most two LUT levels; top's input
    and output paths, untimed out of context, are timed from / to harness registers); the report says
    ``"harness": true``.

    The report (also ``out_dir/report.json``): ``device``, ``part``, ``package``, ``family``;
    ``resources`` (cell counts per class, see `nmforge.fpga.report`); ``device_utilization``: per
    kind (``LUT4`` incl. carry, ``FF``, ``DSP``, ``BRAM``, ``IO``) ``used``, ``available`` and
    ``percent`` of the device; ``placed``: nextpnr's own BEL counts of the placed design (its log's
    "Device utilisation", for the device's resource BELs: with the harness, the whole harness
    design); ``nextpnr_lut4`` (ECP5): nextpnr's "Total LUT4s" breakdown, which ``resources``'
    ``LUT4_total`` / ``LUT4_kinds`` equal out of context; ``fmax_mhz``, ``timing_met``, ``critical_path`` (``from``, ``to``,
    ``delay_ns``, ``logic_ns``, ``routing_ns``, ``logic_levels``, ``carry_levels``); ``timing_note``
    when the family's timing analysis misses part of the design (Gowin: the DSP blocks).
    """
    dev = device_entry(target, device)
    if not (clock_mhz > 0):
        raise ValueError(f"clock_mhz must be > 0, got {clock_mhz!r}")
    say = log or (lambda _msg: None)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sources = _sources(verilog, top, out)
    use_harness = uses_harness(target, out_of_context=out_of_context, harness=harness)
    design_top = top
    harness_ports: list[dict[str, Any]] = []
    if use_harness:
        design_top = f"{top}_harness"
        hv = harness_verilog(_top_ports(ports, sources, top), top, design_top, clock=clock, reset=reset)
        harness_file = out / f"{design_top}.v"
        if harness_file in [p.resolve() for p in sources]:
            raise ValueError(f"{harness_file} is an input file; it would be overwritten by the harness")
        harness_file.write_text(hv)
        sources = [*sources, harness_file]
        harness_ports = ports_from_verilog(hv, design_top)
    sources = _without_zero_memory_init(sources, out, say)

    # --- Yosys ---------------------------------------------------------------------------------
    synth_cmd = " ".join([dev["synth"], *dev["synth_args"], "-top", design_top])
    script = ["# generated by nmforge.fpga.flow"]
    script += [f"read_verilog -sv {_quote(tool_path(p, out))}" for p in sources]
    script += [*(c.format(top=design_top) for c in dev.get("pre_synth", ())), synth_cmd,
               *(c.format(top=design_top) for c in dev.get("post_synth", ()))]
    script += ["stat", "tee -q -o stat.json stat -json", "write_json netlist.json"]
    if dev.get("cell_models"):
        script.append("write_verilog -noattr netlist.v")
    (out / "synth.ys").write_text("\n".join(script) + "\n")
    for stale in ("netlist.json", "netlist.v", "stat.json", "nextpnr_report.json", "report.json", "stat_packed.ys",
                  "flatten.ys"):
        (out / stale).unlink(missing_ok=True)
    t0 = time.monotonic()
    run_tool("yosys", ["-q", "-l", "yosys.log", "-s", "synth.ys"], cwd=out, log_file=out / "yosys.log",
             progress=log)
    packed = _pack_block_registers(out, dev, design_top, log)
    if packed and any(counts["flip_flops_removed"] for counts in packed.values()):
        # stat.json describes the netlist that is placed: count it again after the packing passes.
        (out / "stat_packed.ys").write_text("# generated by nmforge.fpga.flow: statistics after register packing\n"
                                            "read_json netlist.json\ntee -q -o stat.json stat -json\n")
        run_tool("yosys", ["-q", "-l", "yosys_stat.log", "-s", "stat_packed.ys"], cwd=out,
                 log_file=out / "yosys_stat.log")
    t_yosys = time.monotonic() - t0
    harness_resources = None
    if use_harness:
        # top's instance kept its own module (keep_hierarchy): count that module (and its
        # submodules) alone; the harness' own cells are the whole design's minus top's.
        with open(out / "netlist.json") as f:
            netlist = json.load(f)
        cells = count_cells(netlist, harness_instance_type(netlist, design_top))
        total = count_cells(netlist, design_top)
        own = {t: n - cells.get(t, 0) for t, n in total.items() if n - cells.get(t, 0)}
        harness_resources = classify_resources(own, dev)
    else:
        cells = count_cells(out / "netlist.json", top)
        total = cells
    resources = classify_resources(cells, dev)
    n_cells = sum(n for t, n in cells.items() if t != "$scopeinfo")  # $scopeinfo: hierarchy notes
    extra = ""
    dsp_packed, bram_packed = (packed or {}).get("dsp"), (packed or {}).get("bram")
    if dsp_packed:
        extra += (f", {dsp_packed['input_registers']} multiplier input and {dsp_packed['output_registers']} "
                  f"output registers packed into {dsp_packed['mult_blocks']} {dev.get('dsp_unit', 'DSP')} "
                  f"({dsp_packed['flip_flops_removed']} flip-flops moved)")
    if bram_packed and bram_packed["output_registers"]:
        extra += (f", {bram_packed['output_registers']} of {bram_packed['bram_read_ports']} block RAM read "
                  f"ports with their output register ({bram_packed['flip_flops_removed']} flip-flops moved)")
    if harness_resources is not None:
        n_own = sum(n for t, n in harness_resources["cells"].items() if t != "$scopeinfo")
        extra += f" (top alone; harness: {n_own} cells, FF {harness_resources['FF']}, LUT4 {harness_resources['LUT4']})"
    say(f"[synth] yosys {synth_cmd}: {n_cells} cells, LUT4 {resources['LUT4']}, "
        f"FF {resources['FF']}, DSP {resources['DSP']}, BRAM {resources['BRAM']}{extra} ({t_yosys:.1f} s)")
    too_much = fit_problems(classify_resources(total, dev), dev)
    if too_much:
        raise _does_not_fit(dev, ", ".join(too_much), f" [netlist: {out / 'netlist.json'}]")

    # --- nextpnr -------------------------------------------------------------------------------
    ooc = bool(out_of_context and dev["ooc_args"] is not None and not use_harness)
    if use_harness:
        where = f"{dev['package']} pins" + (f" of the {dev['board']}" if dev.get("board") else "")
        say(f"[pnr] register harness {design_top}: I/O on {len(harness_ports)} {where}, Fmax of the whole design")
    elif out_of_context and not ooc:
        say(f"[pnr] note: {dev['nextpnr']} has no out-of-context mode; I/O goes to {dev['package']} pins")
    place_args = list(dev["ooc_args"] if ooc else dev["unconstrained_args"])
    if use_harness:
        place_args += _pin_constraints(dev, harness_ports, clock, reset, out, design_top)
    pnr_args = [*dev["pnr_args"], "--json", "netlist.json", "--top", design_top, "--freq", f"{clock_mhz:g}",
                "--seed", str(int(seed)), "--report", "nextpnr_report.json", "--timing-allow-fail",
                *place_args]
    if detailed_timing:
        pnr_args.append("--detailed-timing-report")
    t0 = time.monotonic()
    try:
        run_tool(dev["nextpnr"], [*pnr_args, "-q", "-l", "nextpnr.log"], cwd=out,
                 log_file=out / "nextpnr.log", progress=log)
    except FlowError as e:
        log_text = _read_text(out / "nextpnr.log")
        over = overused_bels(log_text)
        if over:  # name the resource; the tool's own line follows
            what = ", ".join(f"{u} {bel} where the device has {a}" for bel, u, a in over)
            raise _does_not_fit(dev, what, f" ({e})") from None
        if "legal placement" in str(e):  # every kind fits by count, but the placer could not legalize
            full = ", ".join(f"{bel} {u}/{a} ({100 * u / a:.0f}%)" for bel, u, a in _fullest_bels(log_text, dev))
            raise FlowError(f"no legal placement on {dev['device']}-{dev['package']} "
                            f"(fullest: {full}): {e}") from None
        raise
    t_pnr = time.monotonic() - t0
    if not (out / "nextpnr_report.json").is_file():
        raise FlowError(f"{dev['nextpnr']} wrote no JSON report [log: {out / 'nextpnr.log'}]")
    timing = parse_nextpnr_report(out / "nextpnr_report.json", clock=clock)
    fmax_txt = f"Fmax {timing['fmax_mhz']:.2f} MHz" if timing["fmax_mhz"] is not None else "no Fmax"
    say(f"[pnr] {dev['nextpnr']} {' '.join([*dev['pnr_args'], '--freq', f'{clock_mhz:g}', *place_args])}: "
        f"{fmax_txt}, timing {'met' if timing['timing_met'] else 'FAILED'} ({t_pnr:.1f} s)")

    # --- report --------------------------------------------------------------------------------
    util = timing["utilization"]
    pnr_log = _read_text(out / "nextpnr.log")
    pnr_lut4 = nextpnr_log_counts(pnr_log)["lut4"]
    if pnr_lut4 and not use_harness and pnr_lut4.get("total") != resources["LUT4_total"]:
        say(f"[pnr] warning: nextpnr counts {pnr_lut4.get('total')} LUT4s, the netlist's cells "
            f"{resources['LUT4_total']} ({resources['LUT4_kinds']})")
    capacity = {cls: dev["capacity"][cls] for cls in ("LUT4", "FF", "DSP", "BRAM")
                if dev.get("capacity", {}).get(cls)}
    tools = {"yosys": tool_version("yosys"), "nextpnr": tool_version(dev["nextpnr"])}
    for name in ("yosys", dev["nextpnr"]):
        ver = package_version(name)
        if ver:
            tools[f"yowasp-{name}"] = ver
    report: dict[str, Any] = {
        "top": top,
        "target": target,
        "family": dev["family"],
        "device": dev["device"],
        "part": dev.get("part", dev["device"]),
        "package": dev["package"],
        "clock_mhz": float(clock_mhz),
        "out_of_context": ooc,
        "harness": use_harness,
        "dsp_register_packing": dsp_packed,
        "bram_register_packing": bram_packed,
        "seed": int(seed),
        "resources": resources,
        "capacity": capacity,
        "device_utilization": device_utilization(resources, dev, util, out_of_context=ooc),
        "placed": placed_utilization(pnr_log, dev),
        **({"nextpnr_lut4": pnr_lut4} if pnr_lut4 else {}),
        "clock": timing["clock"],
        "fmax_mhz": timing["fmax_mhz"],
        "timing_met": timing["timing_met"],
        "critical_path": timing["critical_path"],
        "clocks": timing["clocks"],
        "utilization": {bel: u for bel, u in util.items() if u["used"]},
        "tools": tools,
        "elapsed_s": {"yosys": round(t_yosys, 2), "nextpnr": round(t_pnr, 2)},
        "files": {"yosys_log": "yosys.log", "netlist": "netlist.json", "stat": "stat.json",
                  "nextpnr_log": "nextpnr.log", "nextpnr_report": "nextpnr_report.json",
                  **({"gate_netlist": "netlist.v", "cell_models": str(yosys_data_file(dev["cell_models"]))}
                     if dev.get("cell_models") else {})},
    }
    if dev.get("board"):
        report["board"] = dev["board"]
    if dev.get("timing_note") and resources["DSP"]:
        report["timing_note"] = dev["timing_note"]
    if use_harness:
        report["harness_top"] = design_top
        report["harness_resources"] = harness_resources
        report["files"]["harness"] = f"{design_top}.v"
        if dev.get("pin_constraints"):
            report["files"]["pins"] = f"{design_top}.cst"
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_report(report: dict) -> str:
    """Aligned text table of a `synthesize` report (`nmforge.fpga.report.format_report`), plus a note
    when the design was placed through the register harness."""
    text = _format_report(report)
    if report.get("harness"):
        hres = report.get("harness_resources") or {}
        text += (f"\n  register harness {report.get('harness_top', '?')}: resources above are top's alone "
                 f"(harness: LUT4 {hres.get('LUT4', '?')}, FF {hres.get('FF', '?')}); Fmax is the whole design's")
    return text


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m nmforge.fpga", description=__doc__.split("\n")[0])
    ap.add_argument("verilog", nargs="+", help="Verilog file(s)")
    ap.add_argument("top")
    ap.add_argument("target", choices=TARGETS)
    ap.add_argument("out_dir")
    ap.add_argument("--clock-mhz", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--in-context", action="store_true", help="place I/O on package pins")
    ap.add_argument("--harness", action=argparse.BooleanOptionalAction, default=None,
                    help="wrap top in the register harness (default: when the target has no "
                         "out-of-context mode, e.g. ice40)")
    ap.add_argument("--manifest", help="manifest.json of a generated block (its ports, for the harness)")
    ap.add_argument("--device", help="device of the target (default: the target's default; "
                                     + "; ".join(f"{t}: {', '.join(device_names(t))}" for t in TARGETS) + ")")
    args = ap.parse_args(argv)
    try:
        device_entry(args.target, args.device)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        ports = None
        if args.manifest:
            with open(args.manifest) as f:
                ports = json.load(f)
        report = synthesize(args.verilog, args.top, args.target, args.out_dir, clock_mhz=args.clock_mhz,
                            out_of_context=not args.in_context, seed=args.seed, harness=args.harness,
                            ports=ports, device=args.device)
    except FlowError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
