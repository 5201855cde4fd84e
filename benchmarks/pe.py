"""Every PE kind on ECP5 and iCE40: LUT4, FF, DSP blocks, Fmax, and MACs per cycle (per DSP block
and per 1000 LUT4) in each of the kind's modes, measured in one run (issue 3, item 5).

One config per implemented PE kind (gen.config.PE_KINDS), built in code: a 2:4 PE
with N = 2 lanes (int INT8, fp fp8_e4m3 exact, scalable acc 32, mpgemm int4 x int8 group 32 out 8,
mx mxfp8_e4m3, bitserial INT8 x 8-bit planes, posit posit8_0; with --extra also posit16_1 and
mxfp4). For each:

* synthesis of the PE block (gen.elaborate.build(config, "pe"), nmforge.fpga.synthesize): ECP5
  LFE5U-85F out of context, iCE40 UP5K through the register harness (the flow does that by itself;
  a PE that does not fit the UP5K is placed on the HX8K instead, which has no DSP blocks, and the
  table says so). LUT4 is LUT4_total (ECP5: nextpnr's "Total LUT4s": logic LUT4, 2 per CCU2C carry
  cell, 6 per TRELLIS_DPR16X4 distributed RAM), DSP the MULT18X18D / SB_MAC16 count of the
  netlist, Fmax nextpnr's; on iCE40 also the logic cells (ICESTORM_LC) of the whole placed design,
  harness included, as nextpnr counts them;
* beats per cycle, measured: the kind's 2x2 array (the same PE) runs one GEMM of --shape with no
  stalls (scalable: modes mixed at random per lane and beat; bitserial: P = 1 or 8 bit-planes) (cocotb on Verilator, nmforge.sim.regression.run_regression, checked bit for bit against
  the golden model). Streaming beats/cycle = beats / (cycles - latency): the cycles from the first
  input beat to the last result, less the pipeline latency of the manifest (which the testbench
  checks with no stalls); beats/cycle end to end (fill and drain included) is kept too.

MACs per cycle of one PE in a mode = N * MACs per lane per beat * beats/cycle, where a lane does
per beat 1 MAC (int, fp, mx, posit, mpgemm), 1 INT8 / 2 INT4 / 4 INT2 / 1/4 INT16 (scalable), or
1/P for P-bit weights (bitserial, one bit-plane per beat). These are the products actually formed;
the dense-equivalent figure (the pruned half of each 2:4 group skipped) is M/N = 2 times that.
MACs/cycle/DSP divides by the synthesized DSP count ("-" for none).

The issue's must-show: the scalable INT4 ARRAY (--array, default examples/scalable_nm24_2x2.toml,
array block, ECP5 out of context, beats/cycle simulated the same way) reaches at least 2 MACs per
cycle per MULT18X18D; the script exits non-zero when it does not (or when any step failed).

    python benchmarks/pe.py [--kinds int,fp,scalable] [--extra] [--shape 8x256x8]
                            [--work DIR] [--array examples/scalable_nm24_2x2.toml]

Prints one line per step and markdown tables, and writes benchmarks/results/pe.json and
benchmarks/results/pe.md. The work directory (default out/pe-bench) is emptied first: nothing is
reused from an earlier run.
"""
import argparse
import dataclasses
import json
import pathlib
import shutil
import sys
import time

from nmforge.fpga import FlowError, synthesize
from nmforge.gen.config import PE_KINDS, load_config, parse_config
from nmforge.gen.generate import generate
from nmforge.sim.regression import run_regression

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
ROWS = COLS = 2
NM = "2:4"

# One PE per kind (label, [pe] table); EXTRA: second formats of a kind, with --extra.
SPECS = [
    ("INT8", {"kind": "int", "act_width": 8, "weight_width": 8, "acc_width": 32, "overflow": "wrap"}),
    ("fp8_e4m3 exact", {"kind": "fp", "act_format": "fp8_e4m3", "weight_format": "fp8_e4m3",
                        "accumulate": "exact"}),
    ("INT8/4/2/16, acc 32", {"kind": "scalable", "acc_width": 32, "overflow": "wrap"}),
    ("int4 x int8, g32, out 8", {"kind": "mpgemm", "act_format": "int8", "weight_format": "int4",
                                 "group_size": 32, "out_width": 8}),
    ("mxfp8_e4m3", {"kind": "mx", "format": "mxfp8_e4m3", "block_size": 32}),
    ("INT8 x 1..8-bit planes", {"kind": "bitserial", "act_width": 8, "weight_width": 8,
                                "acc_width": 32, "overflow": "wrap"}),
    ("posit8_0", {"kind": "posit", "format": "posit8_0"}),
]
EXTRA = [
    ("posit16_1", {"kind": "posit", "format": "posit16_1"}),
    ("mxfp4", {"kind": "mx", "format": "mxfp4", "block_size": 32}),
]
SCALABLE_MODES = [("INT8", 1), ("INT4", 2), ("INT2", 4), ("INT16", 0.25)]
BITSERIAL_PRECISIONS = (8, 4, 2, 1)
TARGETS = {  # target: (default device, fallback device when the PE does not fit, clock MHz)
    "ecp5": ("LFE5U-85F", None, 120.0),
    "ice40": ("iCE40UP5K", "iCE40HX8K", 48.0),
}
DSP_NAMES = {"ecp5": "MULT18X18D", "ice40": "SB_MAC16"}


def log(line):
    print(line, flush=True)


def make_config(name, pe, clock_mhz):
    return parse_config({"name": name, "array": {"rows": ROWS, "cols": COLS, "dataflow": "output_stationary"},
                         "sparsity": {"nm": NM}, "pe": dict(pe), "synth": {"clock_mhz": clock_mhz}},
                        source=f"benchmarks/pe.py:{name}")


def modes(config, pe_info):
    """(mode, MACs per lane per beat) of a config's PE kind."""
    kind = config.pe_kind
    if kind == "scalable":
        return [(m, f) for m, f in SCALABLE_MODES if m != "INT16" or pe_info.get("int16")]
    if kind == "bitserial":
        return [(f"{p}-bit weights", 1 / p) for p in BITSERIAL_PRECISIONS if p <= config.weight_width]
    label = {"int": f"INT{config.act_width}xINT{config.weight_width}",
             "fp": f"{config.act_format} x {config.weight_format}",
             "mpgemm": f"{config.weight_format} x {config.act_format}"}.get(kind, config.format)
    return [(label, 1)]


class Steps:
    """Numbered progress lines, one per step, with the step's time."""

    def __init__(self, total):
        self.total, self.done = total, 0

    def run(self, what, fn):
        self.done += 1
        t0 = time.monotonic()
        log(f"[{self.done}/{self.total}] {what} ...")
        result = fn()
        log(f"[{self.done}/{self.total}] {what}: {result['summary']} ({time.monotonic() - t0:.0f} s)")
        return result


def simulate(config, shape, work):
    """Beats per cycle of the config's array on one GEMM of `shape`, no stalls."""
    out = work / "sim" / config.name
    generated = generate(config, out)
    timing_file = out / "timing.json"
    quiet = lambda line: None  # noqa: E731 (the step line says what happened)
    sim = run_regression(generated.verilog, generated.manifest, out, seed=1, log=quiet,
                         options={"shape": shape, "stall": 0, "result_json": timing_file})
    if not sim.passed:
        raise RuntimeError(f"simulation failed, see {sim.log}")
    gemm = json.loads(timing_file.read_text())["gemms"][0]
    info = generated.info
    latency = info["latency_cycles"]
    streaming = gemm["beats"] / (gemm["cycles"] - latency)
    return {"config": config.name, "shape": gemm["shape"], "beats": gemm["beats"], "cycles": gemm["cycles"],
            "tiles": gemm["tiles"], "latency": latency, "beats_per_cycle": round(streaming, 4),
            "beats_per_cycle_end_to_end": round(gemm["beats"] / gemm["cycles"], 4),
            "pe": info["pe"], "summary": f"{gemm['beats']} beats in {gemm['cycles']} cycles, latency "
                                         f"{latency}: {streaming:.3f} beats/cycle"}


def synth(config, block, target, work, clock_mhz):
    """Synthesize `block` of `config` for `target`; on iCE40 fall back to the HX8K when the UP5K is
    too small."""
    out = work / "synth" / f"{config.name}_{block}"
    generated = generate(config, out, block)
    top = generated.info["module"]
    quiet = lambda line: None  # noqa: E731
    device, fallback, _ = TARGETS[target]
    note = None
    try:
        report = synthesize(generated.verilog, top, target, out / target, clock_mhz=clock_mhz,
                            device=device, log=quiet)
    except FlowError as e:
        if fallback is None or "does not fit" not in str(e) and "no legal placement" not in str(e):
            raise
        note = f"does not fit the {device}: {e}"
        device = fallback
        report = synthesize(generated.verilog, top, target, out / f"{target}-{fallback}",
                            clock_mhz=clock_mhz, device=fallback, log=quiet)
    res = report["resources"]
    row = {"target": target, "device": report["device"], "block": block, "module": top,
           "clock_mhz": clock_mhz, "LUT4": res["LUT4_total"], "LUT4_kinds": res["LUT4_kinds"],
           "LUT4_logic": res["LUT4"], "placed": report["placed"],
           "CARRY": res["CARRY"], "FF": res["FF"], "DSP": res["DSP"], "dsp_unit": DSP_NAMES[target],
           "BRAM": res["BRAM"], "fmax_mhz": report["fmax_mhz"], "timing_met": report["timing_met"],
           "harness": report["harness"], "out_of_context": report["out_of_context"],
           "elapsed_s": report["elapsed_s"]}
    if note:
        row["note"] = note
    fmax = "no Fmax" if row["fmax_mhz"] is None else f"Fmax {row['fmax_mhz']:.1f} MHz"
    row["summary"] = (f"{row['device']}: LUT4 {row['LUT4']}, FF {row['FF']}, {DSP_NAMES[target]} "
                      f"{row['DSP']}, {fmax}" + (" (UP5K too small)" if note else ""))
    return row


def throughput(row, config, sim, lanes_per_beat):
    """MACs per cycle in each mode, per DSP and per 1000 LUT4 (lanes_per_beat: N per PE, R*C*N
    per array)."""
    row["simulation"] = sim["config"]
    row["beats_per_cycle"] = sim["beats_per_cycle"]
    row["modes"] = []
    for mode, per_lane in modes(config, sim["pe"]):
        macs = lanes_per_beat * per_lane * sim["beats_per_cycle"]
        row["modes"].append({
            "mode": mode, "macs_per_beat": lanes_per_beat * per_lane, "macs_per_cycle": round(macs, 4),
            "dense_eq_macs_per_cycle": round(macs * config.m / config.n, 4),
            "macs_per_cycle_per_dsp": round(macs / row["DSP"], 4) if row["DSP"] else None,
            "macs_per_cycle_per_1k_lut4": round(1000 * macs / row["LUT4"], 3) if row["LUT4"] else None,
        })
    return row


def _num(value, digits=3):
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) and value != int(value) else f"{value:g}"


def markdown(rows, target):
    dsp = DSP_NAMES[target]
    placed_bel = "ICESTORM_LC" if target == "ice40" else None  # the harness design's logic cells
    heads = ["PE kind", "format", "device", "LUT4", "FF", dsp, "Fmax MHz", "beats/cycle", "mode",
             "MACs/cycle (dense-eq)", f"MACs/cycle/{dsp}", "MACs/cycle per 1k LUT4"]
    if placed_bel:
        heads.insert(5, f"{placed_bel} (placed, harness incl.)")
    n_first = 9 if placed_bel else 8
    lines = ["| " + " | ".join(heads) + " |",
             "|" + "|".join(["---"] * 3 + ["---:"] * (n_first - 3) + ["---"] + ["---:"] * 3) + "|"]
    for r in rows:
        if r["target"] != target:
            continue
        if "error" in r:
            lines.append(f"| {r['kind']} | {r['format']} | {r.get('device', '?')} | failed: {r['error']} |"
                         + " |" * (len(heads) - 4))
            continue
        device = r["device"] + (" (UP5K too small)" if r.get("note") else "")
        fmax = "-" if r["fmax_mhz"] is None else f"{r['fmax_mhz']:.1f}"
        for i, m in enumerate(r["modes"]):
            first = [r["kind"], r["format"], device, str(r["LUT4"]), str(r["FF"]), str(r["DSP"]), fmax,
                     f"{r['beats_per_cycle']:.3f}"] if i == 0 else [""] * 8
            if placed_bel:
                placed = (r.get("placed") or {}).get(placed_bel) or {}
                first.insert(5, (f"{placed['used']} ({placed['percent']:.0f}%)" if placed else "-")
                             if i == 0 else "")
            lines.append("| " + " | ".join(first + [
                m["mode"], f"{_num(m['macs_per_cycle'])} ({_num(m['dense_eq_macs_per_cycle'])})",
                _num(m["macs_per_cycle_per_dsp"]), _num(m["macs_per_cycle_per_1k_lut4"])]) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", help="comma-separated PE kinds (default: every implemented kind)")
    parser.add_argument("--extra", action="store_true", help="also posit16_1 and mxfp4")
    parser.add_argument("--shape", default="8x256x8", help="the simulated GEMM, MxKxN (default 8x256x8)")
    parser.add_argument("--targets", default="ecp5,ice40")
    parser.add_argument("--array", default=str(REPO / "examples" / "scalable_nm24_2x2.toml"),
                        help="the scalable array config of the must-show (empty: skip)")
    parser.add_argument("--work", default=str(REPO / "out" / "pe-bench"),
                        help="work directory, emptied first (default out/pe-bench)")
    args = parser.parse_args()
    t_start = time.monotonic()

    kinds = args.kinds.split(",") if args.kinds else list(PE_KINDS)
    unknown = [k for k in kinds if k not in PE_KINDS]
    if unknown:
        sys.exit(f"--kinds: {', '.join(unknown)} not implemented; allowed: {', '.join(PE_KINDS)}")
    targets = args.targets.split(",")
    specs = [(label, pe) for label, pe in SPECS + (EXTRA if args.extra else []) if pe["kind"] in kinds]
    missing = [k for k in kinds if k not in {pe["kind"] for _, pe in specs}]
    if missing:
        sys.exit(f"no benchmark config for PE kind(s) {', '.join(missing)}: add them to SPECS")
    configs = [(label, make_config(f"pe_{pe['kind']}" + (f"_{pe['format']}" if (label, pe) in EXTRA else ""),
                                   pe, TARGETS["ecp5"][2])) for label, pe in specs]
    array = load_config(args.array) if args.array else None

    work = pathlib.Path(args.work).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)

    def sim_key(c):
        return dataclasses.replace(c, name="x", clock_mhz=120.0)

    # One simulation per distinct design: the array config's own 2x2 array also serves its kind.
    sim_configs = {sim_key(array): array} if array is not None else {}
    for _, config in configs:
        sim_configs.setdefault(sim_key(config), config)
    steps = Steps(len(sim_configs) + len(configs) * len(targets) + (array is not None))
    log(f"PE benchmark: kinds {', '.join(kinds)}; targets {', '.join(targets)}; {ROWS}x{COLS} arrays "
        f"simulated on a {args.shape} GEMM; work directory {work}")

    failures = []
    sims = {}
    for key, config in sim_configs.items():
        try:
            sims[key] = steps.run(f"simulate {config.name} ({config.rows}x{config.cols} array, "
                                  f"{config.pe_summary})", lambda: simulate(config, args.shape, work))
        except Exception as e:  # noqa: BLE001 (report every failing step, keep going)
            failures.append(f"simulate {config.name}: {e}")
            log(f"      FAILED: {e}")

    rows = []
    for label, config in configs:
        sim = sims.get(sim_key(config))
        for target in targets:
            base = {"kind": config.pe_kind, "format": label, "config": config.to_dict(),
                    "pe_summary": config.pe_summary, "nm": config.nm, "lanes": config.n}
            try:
                row = steps.run(f"synthesize {config.name} PE for {target}",
                                lambda: synth(config, "pe", target, work, TARGETS[target][2]))
                row.pop("summary")
                row = {**base, **row}
                if sim is None:
                    raise RuntimeError("no simulation")
                rows.append(throughput(row, config, sim, config.n))
            except Exception as e:  # noqa: BLE001
                failures.append(f"{config.name} on {target}: {e}")
                log(f"      FAILED: {e}")
                rows.append({**base, "target": target, "error": str(e).splitlines()[0][:120]})

    array_row = None
    if array is not None:
        sim = sims.get(sim_key(array))
        try:
            array_row = steps.run(f"synthesize {array.name} array for ecp5",
                                  lambda: synth(array, "array", "ecp5", work, array.clock_mhz))
            array_row.pop("summary")
            array_row = {"kind": array.pe_kind, "format": f"{array.rows}x{array.cols} array",
                         "config": str(pathlib.Path(args.array).resolve().relative_to(REPO))
                         if pathlib.Path(args.array).resolve().is_relative_to(REPO) else args.array,
                         "pe_summary": array.pe_summary, "nm": array.nm,
                         "lanes": array.rows * array.cols * array.n, **array_row}
            if sim is None:
                raise RuntimeError("no simulation")
            throughput(array_row, array, sim, array.rows * array.cols * array.n)
        except Exception as e:  # noqa: BLE001
            failures.append(f"{array.name} array on ecp5: {e}")
            log(f"      FAILED: {e}")
            array_row = None

    must_show = None
    if array_row is not None:
        int4 = next((m for m in array_row["modes"] if m["mode"] == "INT4"), None)
        per_dsp = int4["macs_per_cycle_per_dsp"] if int4 else None
        must_show = {"claim": "scalable INT4 array on ECP5: >= 2 MACs per cycle per MULT18X18D",
                     "config": array_row["config"], "int4_macs_per_cycle": int4 and int4["macs_per_cycle"],
                     "MULT18X18D": array_row["DSP"], "int4_macs_per_cycle_per_dsp": per_dsp,
                     # no MULT18X18D at all (LUT multipliers only) meets the claim trivially
                     "passed": int4 is not None and (array_row["DSP"] == 0 or per_dsp >= 2)}

    elapsed = time.monotonic() - t_start
    tables = []
    for target in targets:
        title = {"ecp5": "ECP5 (LFE5U-85F, out of context)",
                 "ice40": "iCE40 (UP5K through the register harness; HX8K where the UP5K is too small)"}[target]
        shown = rows + ([array_row] if array_row is not None and target == "ecp5" else [])
        tables.append(f"### {title}\n\n{markdown(shown, target)}")
    text = "\n\n".join(tables)
    print()
    print(text)
    summary = (f"{NM} PEs with N = 2 lanes; beats/cycle from a {args.shape} GEMM on a {ROWS}x{COLS} array of "
               f"each PE (cocotb + Verilator, no stalls); MACs/cycle are the products formed, "
               f"dense-equivalent (x M/N) in brackets; LUT4 includes carry cells.")
    if must_show:
        verdict = "PASS" if must_show["passed"] else "FAIL"
        line = (f"must-show ({verdict}): {must_show['config']} INT4 on ECP5: {_num(must_show['int4_macs_per_cycle'])} "
                f"MACs/cycle on {must_show['MULT18X18D']} MULT18X18D = "
                f"{_num(must_show['int4_macs_per_cycle_per_dsp'])} per MULT18X18D (needs >= 2)")
        print("\n" + line)
        summary += "\n\n" + line
    RESULTS.mkdir(parents=True, exist_ok=True)
    figures = {
        "description": "benchmarks/pe.py: every PE kind on ECP5 and iCE40; " + summary.split("\n")[0],
        "shape": args.shape, "array_size": [ROWS, COLS], "nm": NM,
        "targets": {t: {"device": TARGETS[t][0], "fallback_device": TARGETS[t][1], "clock_mhz": TARGETS[t][2],
                        "dsp_unit": DSP_NAMES[t]} for t in targets},
        "simulations": [{k: v for k, v in s.items() if k != "summary"} for s in sims.values()],
        "pes": rows, "array": array_row, "must_show": must_show, "failures": failures,
        "elapsed_s": round(elapsed, 1),
    }
    (RESULTS / "pe.json").write_text(json.dumps(figures, indent=2) + "\n")
    (RESULTS / "pe.md").write_text(f"# PE benchmark (benchmarks/pe.py)\n\n{summary}\n\n{text}\n")
    log(f"\nwrote {RESULTS / 'pe.json'} and {RESULTS / 'pe.md'} ({elapsed / 60:.1f} min)")
    if failures:
        sys.exit("failed steps:\n  " + "\n  ".join(failures))
    if must_show is not None and not must_show["passed"]:
        sys.exit(f"must-show missed: {must_show['claim']}")


if __name__ == "__main__":
    main()
