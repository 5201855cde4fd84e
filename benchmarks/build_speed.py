"""Verilog generation and Verilator build time per array size (INT8 2:4), measured in one run.

For each size (default 2x2, 4x4, 8x8, 16x16): generate the array (`nmforge generate`'s code path,
in this process) and build its Verilator model (sim.runner.build_model, the build every test and
`nmforge sim` use) into a fresh, empty build cache, so every build is cold. Reports wall time and
CPU time (this process and its children: Yosys, Verilator, the C++ compiler); on a shared machine
the CPU time is the figure to compare. `--compare-opt` also builds the 4x4 array at -O0 and -Os
and runs the default regression on each (build vs run trade-off of the C++ optimisation).

The peer figure (Systars 8x8, ~55 CPU-s) is not measured here: it is derived from issue 10's
figures (the 8x8 2:4 array built in ~126 CPU-s, 2.3x what an 8x8 Systars array takes).
Prints a table and writes benchmarks/results/build_speed.json.

    python benchmarks/build_speed.py [--sizes 2x2,4x4,8x8,16x16] [--compare-opt]
"""
import argparse
import json
import os
import pathlib
import resource
import sys
import tempfile
import time

from nmforge.gen.config import parse_config
from nmforge.gen.generate import generate
from nmforge.sim.regression import run_regression
from nmforge.sim.runner import CXX_OPT, build_model

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SYSTARS_8X8_BUILD_CPU_S = round(126 / 2.3)  # issue 10: 126 CPU-s was 2.3x Systars' 8x8
GENERATION_GOAL_16X16_S = 4.0


def config(rows, cols):
    return parse_config({
        "name": f"nm24_int8_{rows}x{cols}",
        "array": {"rows": rows, "cols": cols, "dataflow": "output_stationary"},
        "sparsity": {"nm": "2:4"},
        "pe": {"kind": "int", "act_width": 8, "weight_width": 8, "acc_width": 32, "overflow": "wrap"},
    }, source="build_speed")


class Timer:
    """Wall and CPU seconds (this process + its finished children) of a `with` block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, self._cpu() - self.cpu

    @staticmethod
    def _cpu():
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(rows, cols, work, log):
    cfg = config(rows, cols)
    with Timer() as gen:
        generated = generate(cfg, work / cfg.name)
    lines = generated.verilog.read_text().count("\n")
    log(f"[{cfg.name}] generated {lines} lines in {gen.wall:.2f} s ({gen.cpu:.2f} CPU-s); building")
    with Timer() as build:
        build_model([generated.verilog.resolve()], cfg.name, work / "cache", log=log)
    log(f"[{cfg.name}] built in {build.wall:.1f} s ({build.cpu:.1f} CPU-s)")
    return {"size": f"{rows}x{cols}", "verilog_lines": lines,
            "generate_wall_s": round(gen.wall, 2), "generate_cpu_s": round(gen.cpu, 2),
            "build_wall_s": round(build.wall, 1), "build_cpu_s": round(build.cpu, 1),
            "cxx_opt": CXX_OPT}


def compare_opt(work, log, levels=("-O0", "-Os")):
    """Build and run the default regression (4 GEMMs, stalls 0.3) of the 4x4 array per level."""
    cfg = config(4, 4)
    generated = generate(cfg, work / "opt" / cfg.name)
    rows = []
    for level in levels:
        cache = work / f"cache{level}"
        os.environ["NMFORGE_CXX_OPT"] = level
        with Timer() as build:
            build_model([generated.verilog.resolve()], cfg.name, cache, log=log)
        with Timer() as run:  # finds the build made above
            sim = run_regression(generated.verilog, generated.manifest, work / "opt" / level, seed=1,
                                 log=log, options={"gemms": 4, "stall": 0.3}, build_dir=cache)
        if not sim.passed:
            sys.exit(f"{cfg.name} at {level}: simulation failed, see {sim.log}")
        del os.environ["NMFORGE_CXX_OPT"]
        rows.append({"cxx_opt": level, "build_wall_s": round(build.wall, 1), "build_cpu_s": round(build.cpu, 1),
                     "run_wall_s": round(run.wall, 1), "run_cpu_s": round(run.cpu, 1)})
        log(f"[opt {level}] build {build.cpu:.1f} CPU-s, regression {run.cpu:.1f} CPU-s")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2x2,4x4,8x8,16x16")
    parser.add_argument("--compare-opt", action="store_true")
    args = parser.parse_args(argv)
    sizes = [tuple(int(x) for x in size.split("x")) for size in args.sizes.split(",")]
    log = lambda line: print(line, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="nmforge-build-speed-") as tmp:
        work = pathlib.Path(tmp)
        table = [measure(rows, cols, work, log) for rows, cols in sizes]
        opt = compare_opt(work, log) if args.compare_opt else None
    print(f"\n{'size':>6} {'lines':>7} {'generate s':>11} {'gen CPU-s':>10} {'build s':>8} {'build CPU-s':>12}")
    for row in table:
        print(f"{row['size']:>6} {row['verilog_lines']:>7} {row['generate_wall_s']:>11.2f} "
              f"{row['generate_cpu_s']:>10.2f} {row['build_wall_s']:>8.1f} {row['build_cpu_s']:>12.1f}")
    print(f"C++ {CXX_OPT}; peer: Systars 8x8 build ~{SYSTARS_8X8_BUILD_CPU_S} CPU-s (issue 10's figures); "
          f"goal: 16x16 generation <= {GENERATION_GOAL_16X16_S} s")
    if opt:
        for row in opt:
            print(f"4x4 at {row['cxx_opt']}: build {row['build_cpu_s']} CPU-s, default regression "
                  f"{row['run_cpu_s']} CPU-s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "build_speed.json"
    out.write_text(json.dumps({"sizes": table, "compare_opt": opt,
                               "peer_systars_8x8_build_cpu_s": SYSTARS_8X8_BUILD_CPU_S,
                               "peer_source": "issue 10: 8x8 2:4 build 126 CPU-s = 2.3x Systars 8x8",
                               "machine_load_1min": os.getloadavg()[0]}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
