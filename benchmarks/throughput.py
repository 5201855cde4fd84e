"""Dense vs 2:4 on the same R x C array, widths and multiplier count, measured in one run.

For each design: simulate one 64 x 256 x 64 GEMM with no stalls (cocotb on Verilator, checked
against the golden model), count cycles, and synthesize for ECP5-85F out of context. Prints a
table and writes the figures to benchmarks/results/throughput.json.

    python benchmarks/throughput.py [--dense examples/dense_int8_8x8.toml]
                                    [--sparse examples/nm24_int8_8x8.toml] [--shape 64x256x64]
"""
import argparse
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


def measure(config_path, shape, work, log):
    config = load_config(config_path)
    out = work / config.name
    generated = generate(config, out)
    timing_file = out / "timing.json"
    log(f"[{config.name}] simulating a {shape} GEMM")
    sim = run_regression(generated.verilog, generated.manifest, out, seed=1, log=log,
                         options={"shape": shape, "stall": 0, "result_json": timing_file})
    if not sim.passed:
        sys.exit(f"{config.name}: simulation failed, see {sim.log}")
    gemm = json.loads(timing_file.read_text())["gemms"][0]
    mdim, k, ndim = gemm["shape"]
    macs_per_cycle = mdim * k * ndim / gemm["cycles"]
    log(f"[{config.name}] synthesizing for ECP5 (out of context)")
    report = synthesize(generated.verilog, config.name, "ecp5", out / "synth-ecp5",
                        clock_mhz=config.clock_mhz, log=log)
    res = report["resources"]
    return {
        "config": str(config_path), "nm": config.nm, "rows": config.rows, "cols": config.cols,
        "multipliers": config.multipliers, "cycles": gemm["cycles"], "beats": gemm["beats"],
        "dense_macs_per_cycle": round(macs_per_cycle, 2), "peak_macs_per_cycle": config.dense_macs_per_cycle,
        "LUT4": res["LUT4_total"], "LUT4_kinds": res["LUT4_kinds"], "LUT4_logic": res["LUT4"],
        "CCU2C": res["CARRY"], "TRELLIS_DPR16X4": res["LUTRAM"], "FF": res["FF"],
        "MULT18X18D": res["DSP"], "fmax_mhz": report["fmax_mhz"],
        "lut4_per_dense_mac_per_cycle": round(res["LUT4_total"] / macs_per_cycle, 1),
    }


def table(rows):
    keys = ["nm", "cycles", "dense_macs_per_cycle", "LUT4", "FF", "MULT18X18D", "fmax_mhz",
            "lut4_per_dense_mac_per_cycle"]
    heads = ["pattern", "cycles", "dense-eq MAC/cycle", "LUT4", "FF", "MULT18X18D", "Fmax MHz",
             "LUT4 per MAC/cycle"]
    widths = [max(len(h), *(len(str(r[k])) for r in rows)) for h, k in zip(heads, keys)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(str(r[k]).rjust(w) for k, w in zip(keys, widths)) for r in rows]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", default=str(REPO / "examples" / "dense_int8_8x8.toml"))
    parser.add_argument("--sparse", default=str(REPO / "examples" / "nm24_int8_8x8.toml"))
    parser.add_argument("--shape", default="64x256x64")
    args = parser.parse_args()
    log = lambda line: print(line, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="nmforge-bench-") as tmp:
        dense, sparse = (measure(path, args.shape, pathlib.Path(tmp), log) for path in (args.dense, args.sparse))
    ratio = sparse["dense_macs_per_cycle"] / dense["dense_macs_per_cycle"]
    figures = {"shape": args.shape, "dense": dense, "sparse": sparse,
               "throughput_ratio_sparse_over_dense": round(ratio, 3)}
    print()
    print(table([dense, sparse]))
    print(f"\n{sparse['nm']} / dense throughput: {ratio:.3f}x "
          f"(same multipliers: {sparse['MULT18X18D']} vs {dense['MULT18X18D']} MULT18X18D)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "throughput.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {RESULTS / 'throughput.json'}")


if __name__ == "__main__":
    main()
