"""Every run-time pattern on one run-time 4:8 design, against a fixed-pattern 4:8 design of the same
multiplier count, measured in one run.

The run-time design (`sparsity.runtime = true`, default examples/rt48_int8_4x4.toml: 4x4 INT8,
4 multipliers per PE) simulates the same 64 x 256 x 64 GEMM in each pattern of its table, one
after the other in one simulation (cocotb on Verilator, no stalls, each GEMM checked against the
golden model), and counts each GEMM's cycles. The fixed-pattern design is the same config with
`runtime = false` (4:8 only); it simulates the GEMM in 4:8. Both are synthesized for ECP5-85F out
of context. Prints a table and writes benchmarks/results/patterns.json.

Exits with status 1 when 1:8 does not reach 7.6x the dense throughput of the same hardware, or 2:8
does not reach 3.8x.

    python benchmarks/patterns.py [--config examples/rt48_int8_4x4.toml] [--shape 64x256x64]
"""
import argparse
import dataclasses
import json
import pathlib
import sys
import tempfile

from nmforge.fpga import synthesize
from nmforge.gen.config import load_config
from nmforge.gen.generate import generate
from nmforge.sim.regression import run_regression

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
# The pattern-to-dense throughput ratios the run-time design must reach (of the ideal M'/N').
REQUIRED = {"1:8": 7.6, "2:8": 3.8}


def simulate(config, shape, patterns, work, log):
    """Cycles per GEMM of `shape`, one GEMM per pattern, in one simulation; returns the result
    JSON's GEMM list and the manifest info."""
    out = work / config.name
    generated = generate(config, out)
    timing_file = out / "timing.json"
    options = {"shape": shape, "stall": 0, "result_json": timing_file, "gemms": len(patterns)}
    if config.runtime:
        options["patterns"] = ",".join(patterns)
    log(f"[{config.name}] simulating a {shape} GEMM in {', '.join(patterns)}")
    sim = run_regression(generated.verilog, generated.manifest, out, seed=1, log=log,
                         options=options)
    if not sim.passed:
        sys.exit(f"{config.name}: simulation failed, see {sim.log}")
    return json.loads(timing_file.read_text())["gemms"], generated


def synth(config, generated, work, log):
    log(f"[{config.name}] synthesizing for ECP5 (out of context)")
    report = synthesize(generated.verilog, config.name, "ecp5", work / config.name / "synth-ecp5",
                        clock_mhz=config.clock_mhz, log=log)
    res = report["resources"]
    return {"LUT4": res["LUT4_total"], "LUT4_kinds": res["LUT4_kinds"], "LUT4_logic": res["LUT4"],
            "CCU2C": res["CARRY"], "TRELLIS_DPR16X4": res["LUTRAM"],
            "FF": res["FF"], "MULT18X18D": res["DSP"], "BRAM": res.get("BRAM"),
            "fmax_mhz": report["fmax_mhz"], "timing_met": report.get("timing_met")}


def pattern_rows(gemms, multipliers, dense_cycles=None):
    rows = []
    for gemm in gemms:
        mdim, k, ndim = gemm["shape"]
        macs_per_cycle = mdim * k * ndim / gemm["cycles"]
        rows.append({"pattern": gemm.get("pattern", "4:8"), "cycles": gemm["cycles"],
                     "beats": gemm["beats"], "dense_macs_per_cycle": round(macs_per_cycle, 2),
                     "per_multiplier": round(macs_per_cycle / multipliers, 3)})
    dense = dense_cycles or next(r["cycles"] for r in rows if r["pattern"] == "dense")
    for row in rows:
        row["x_dense"] = round(dense / row["cycles"], 3)
    return rows


def table(rows, keys, heads):
    widths = [max(len(h), *(len(str(r[k])) for r in rows)) for h, k in zip(heads, keys)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(str(r[k]).rjust(w) for k, w in zip(keys, widths)) for r in rows]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "examples" / "rt48_int8_4x4.toml"))
    parser.add_argument("--shape", default="64x256x64")
    args = parser.parse_args()
    log = lambda line: print(line, flush=True)  # noqa: E731

    runtime = load_config(args.config)
    if not runtime.runtime:
        sys.exit(f"{args.config}: not a run-time design (sparsity.runtime = true)")
    fixed = dataclasses.replace(runtime, name=f"{runtime.name}_fixed", runtime=False)
    with tempfile.TemporaryDirectory(prefix="nmforge-bench-") as tmp:
        work = pathlib.Path(tmp)
        order = generate(runtime, work / runtime.name).info["parameters"]["patterns"]  # the table
        gemms, generated = simulate(runtime, args.shape, order, work, log)
        fixed_gemms, fixed_generated = simulate(fixed, args.shape, [fixed.nm], work, log)
        runtime_res = synth(runtime, generated, work, log)
        fixed_res = synth(fixed, fixed_generated, work, log)

    rows = pattern_rows(gemms, runtime.multipliers)
    dense_cycles = next(r["cycles"] for r in rows if r["pattern"] == "dense")
    fixed_row = pattern_rows(fixed_gemms, fixed.multipliers, dense_cycles)[0]
    print()
    print(f"{runtime.name}: run-time {runtime.nm} ({runtime.rows}x{runtime.cols}, "
          f"{runtime.multipliers} multipliers), {args.shape} GEMM per pattern, no stalls")
    print(table(rows, ["pattern", "cycles", "dense_macs_per_cycle", "per_multiplier", "x_dense"],
                ["pattern", "cycles", "dense-eq MAC/cycle", "per multiplier", "x dense"]))
    print(f"fixed {fixed.nm} design, same GEMM: {fixed_row['cycles']} cycles, "
          f"{fixed_row['dense_macs_per_cycle']} dense-eq MAC/cycle")
    print()
    designs = [{"design": f"run-time {runtime.nm}", **runtime_res},
               {"design": f"fixed {fixed.nm}", **fixed_res}]
    print(table(designs, ["design", "LUT4", "FF", "MULT18X18D", "BRAM", "fmax_mhz"],
                ["ECP5-85F", "LUT4 (incl. carry)", "FF", "MULT18X18D", "BRAM", "Fmax MHz"]))
    overhead = {key: round(runtime_res[key] / fixed_res[key], 3)
                for key in ("LUT4", "FF") if fixed_res[key]}
    print(f"run-time / fixed: LUT4 {overhead.get('LUT4')}x, FF {overhead.get('FF')}x")

    ratios = {r["pattern"]: r["x_dense"] for r in rows}
    failed = [f"{p}: {ratios.get(p)}x < {need}x" for p, need in REQUIRED.items()
              if ratios.get(p, 0) < need]
    figures = {"shape": args.shape, "config": str(args.config), "rows": runtime.rows,
               "cols": runtime.cols, "multipliers": runtime.multipliers,
               "runtime": {"nm": runtime.nm, "patterns": rows, "resources": runtime_res},
               "fixed": {"nm": fixed.nm, "cycles": fixed_row["cycles"],
                         "dense_macs_per_cycle": fixed_row["dense_macs_per_cycle"],
                         "resources": fixed_res},
               "runtime_over_fixed": overhead, "required_x_dense": REQUIRED,
               "passed": not failed}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "patterns.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {RESULTS / 'patterns.json'}")
    if failed:
        sys.exit("throughput below the required ratio: " + "; ".join(failed))


if __name__ == "__main__":
    main()
