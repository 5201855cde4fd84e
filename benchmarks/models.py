"""The example models on the accelerator: accuracy, cycles, utilization, inferences/s.

For each (model, design, per-layer patterns) of RUNS: compile the model file for the design
(prune to its pattern or the per-layer ones, INT8 or FP8 as the design's PE kind), run the whole test set on the golden executor (accuracy, against the float model's), and
the first --sim-inputs test inputs on the Verilator-simulated accelerator (bit-exact against
golden, or the script fails), whose cycle count from the first command to idle (weight loads
included) gives cycles per input and dense-equivalent MACs/cycle. From the ECP5 report of
`nmforge synth DESIGN.toml --target ecp5` (found at out/<design name>/synth-ecp5/report.json,
where `nmforge synth` writes it by default, or given with --synth-report DESIGN=REPORT.json; used
only when the Verilog beside it is the design's on today's RTL) it
projects inferences/s = Fmax / cycles per input; without a report that column is empty (this
script never synthesizes: the 8x8 accelerator takes 30+ min). Prints a table and writes
benchmarks/results/models.json. Exits 1 when a simulation differs from golden, when
the 2:4 MLP's accuracy falls more than a point below the float model's, or when the 2:4 MLP
takes more than 0.6x the cycles of the dense (2:2) one.

    python benchmarks/models.py [--sim-inputs 64] [--synth-report accel_nm24_int8_8x8=out/x/synth-ecp5/report.json]
"""
import argparse
import json
import pathlib
import sys
import time

import numpy as np

from nmforge.compiler import compile_model, load_model_file
from nmforge.compiler.emit import emit_program
from nmforge.compiler.report import layer_report
from nmforge.compiler.runtime import Program, dequantize, run_program
from nmforge.compiler.sim import run_on_sim
from nmforge.compiler.training import accuracy
from nmforge.gen.config import load_config
from nmforge.gen.elaborate import build, module_name, to_verilog

REPO = pathlib.Path(__file__).resolve().parent.parent
MODELS = REPO / "examples" / "models"
RESULTS = REPO / "benchmarks" / "results"
# (model, design, per-layer patterns on a run-time design)
RUNS = [("digits_mlp", "accel_nm24_int8_8x8", None), ("digits_mlp", "accel_dense_int8_8x8", None),
        ("digits_cnn", "accel_nm24_int8_8x8", None), ("residual_block", "accel_nm24_int8_8x8", None),
        ("digits_mlp", "accel_rt48_int8_2x4", {"fc1": "1:8", "fc3": "2:4"}),
        ("digits_mlp", "accel_fp8_4x4", None)]
MAX_CYCLE_RATIO = 0.6


def synth_report(design_name, config, given):
    """(path, report) of the design's ECP5 synthesis report, or (None, None) when there is none."""
    path = pathlib.Path(given[design_name]) if design_name in given else \
        REPO / "out" / config.name / "synth-ecp5" / "report.json"
    if not path.is_file():
        if design_name in given:
            sys.exit(f"models.py: --synth-report {design_name}={path}: no such file")
        return None, None
    report = json.loads(path.read_text())
    if report.get("target") != "ecp5" or not report.get("fmax_mhz"):
        sys.exit(f"models.py: {path}: not an ECP5 report with fmax_mhz (target "
                 f"{report.get('target')!r}); allowed: the report.json of nmforge synth --target ecp5")
    # the Verilog nmforge synth read sits beside its synth-ecp5 folder: it must be this design's
    # of today (another config of the same name, or older RTL, has another Fmax)
    synthesized = path.parent.parent / f"{report['top']}.v"
    today = to_verilog(build(config, "accelerator"), module_name(config, "accelerator"))
    if not synthesized.is_file() or synthesized.read_text() != today:
        if design_name in given:
            sys.exit(f"models.py: --synth-report {design_name}={path}: {synthesized} is not the "
                     f"Verilog of examples/models/{design_name}.toml on today's RTL; allowed: a "
                     f"report of nmforge synth on that config")
        print(f"  {path}: synthesized from other Verilog than today's {design_name}: not used")
        return None, None
    return path, report


def measure(model_name, design_name, patterns, sim_inputs, synthesis):
    """One row of the table; `synthesis` is the design's (path, report) from synth_report."""
    model_file = load_model_file(MODELS / f"{model_name}.py")
    module = sys.modules[f"nmforge_model_{model_name}"]
    config = load_config(MODELS / f"{design_name}.toml")
    x, y = model_file.test_data()
    float_accuracy = accuracy(module.dense_model()(x).detach().numpy(), y)
    model = model_file.model() if config.n < config.m else module.dense_model()
    compiled = compile_model(model, model_file.example_input(), config,
                             calibration=model_file.calibration_data(), patterns=patterns)
    spec, images = emit_program(compiled)
    program = Program(None, spec, images)
    golden, _ = run_program(program, x.numpy())
    row = {"model": model_name, "design": design_name,
           "pattern": ",".join(layer["pattern"] for layer in spec["layers"]),
           "format": spec["layers"][0]["format"],
           "float_accuracy": float_accuracy,
           "accuracy": accuracy(dequantize(program, golden), y), "test_inputs": len(x),
           "batch": spec["batch"]}
    n = min(sim_inputs, len(x))
    _, sim = run_on_sim(program, x.numpy()[:n], RESULTS / "sim" / design_name,
                        log=lambda line: print(f"  {line}", flush=True))
    report = layer_report(program, n)
    row.update({"sim_inputs": n, "sim_passed": sim["passed"], "cycles": sim.get("cycles"),
                "array_beats": report["array_beats"], "dense_macs": report["dense_macs"]})
    if sim["passed"]:
        row["cycles_per_input"] = sim["cycles"] / n
        row["macs_per_cycle"] = report["dense_macs"] / sim["cycles"]
        row["utilization"] = (report["dense_macs"] / sim["cycles"]
                              / (config.rows * config.cols * config.m))
        path, synth = synthesis
        if synth:
            row.update({"synth_report": str(path), "fmax_mhz": synth["fmax_mhz"],
                        "device": synth.get("device"),
                        "inferences_per_s": synth["fmax_mhz"] * 1e6 / row["cycles_per_input"]})
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-inputs", type=int, default=64, help="test inputs simulated per run")
    parser.add_argument("--synth-report", action="append", default=[], metavar="DESIGN=REPORT.json",
                        help="the design's `nmforge synth --target ecp5` report (default: "
                        "out/<design name>/synth-ecp5/report.json when it exists), repeatable")
    args = parser.parse_args()
    reports = {}
    for item in args.synth_report:
        design, sep, path = item.partition("=")
        if not sep or design not in {d for _, d, _ in RUNS}:
            parser.error(f"--synth-report {item!r}: expected DESIGN=REPORT.json with DESIGN one of "
                         f"{', '.join(sorted({d for _, d, _ in RUNS}))}")
        reports[design] = path
    # each design's report checked once, before any simulation (its Verilog is elaborated for it)
    synthesis = {design: synth_report(design, load_config(MODELS / f"{design}.toml"), reports)
                 for design in dict.fromkeys(d for _, d, _ in RUNS)}
    start = time.monotonic()
    rows = []
    for model_name, design_name, patterns in RUNS:
        print(f"{model_name} on {design_name} ...", flush=True)
        rows.append(measure(model_name, design_name, patterns, args.sim_inputs,
                            synthesis[design_name]))
    print(f"\n{'model':<16}{'design':<22}{'patterns':<17}{'format':<10}{'float acc':>10}{'acc':>8}{'cycles/input':>14}"
          f"{'MACs/cycle':>12}{'util':>8}{'inf/s':>10}")
    for r in rows:
        print(f"{r['model']:<16}{r['design']:<22}{r['pattern']:<17}{r['format']:<10}"
              f"{r['float_accuracy']:>10.2%}{r['accuracy']:>8.2%}"
              f"{r.get('cycles_per_input', float('nan')):>14.1f}{r.get('macs_per_cycle', float('nan')):>12.1f}"
              f"{r.get('utilization', float('nan')):>8.1%}"
              f"{(format(r['inferences_per_s'], '.0f') if 'inferences_per_s' in r else '-'):>10}")
    mlp = {r["design"]: r for r in rows if r["model"] == "digits_mlp"}
    ratio = mlp["accel_nm24_int8_8x8"]["cycles"] / mlp["accel_dense_int8_8x8"]["cycles"]
    print(f"digits MLP: 2:4 takes {ratio:.3f}x the cycles of dense (2:2) on the same multipliers")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "models.json"
    out.write_text(json.dumps({"runs": rows, "mlp_cycle_ratio": ratio,
                               "elapsed_s": round(time.monotonic() - start, 1)}, indent=1) + "\n")
    print(f"wrote {out}")
    failed = [r for r in rows if not r["sim_passed"]]
    mlp24 = mlp["accel_nm24_int8_8x8"]
    if failed or ratio > MAX_CYCLE_RATIO or mlp24["accuracy"] < mlp24["float_accuracy"] - 0.01:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
