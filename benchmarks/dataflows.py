"""Dataflows compared inside the accelerator: the 8x8 INT8 2:4 array output-stationary,
dot-product and weight-stationary (same 128 multipliers, peak 256 dense-equivalent MACs/cycle),
on GEMM shapes that favour each: batch-1 matrix-vector, tall-skinny, long K, square.

    python benchmarks/dataflows.py [--shapes 1x1024x64,256x256x256] [--no-sim]
        [--synth-report DATAFLOW=PATH ...]

Per design and shape, one program: LOAD PARAM, ACT and WEIGHT, the GEMM, STOREs (int8 results).
Verilator runs it (bit-exact against the golden executor, which is checked against
golden.gemm) and the cycle model predicts it; `gemm_cycles` is the GEMM command alone (cycle
model: its start to its unit free), `gemm_macs_per_cycle` the dense-equivalent MACs per cycle
of that command, `program_cycles` the whole program from Verilator. `--synth-report` adds the
ECP5 figures of `nmforge synth CONFIG --target ecp5` of each dataflow's design (e.g.
output_stationary=out/n88/synth-ecp5 dot_product=out/dot88/synth-ecp5
weight_stationary=out/ws88/synth-ecp5 for examples/models/accel_nm24_int8_8x8.toml,
accel_dot24_int8_8x8.toml and accel_ws24_int8_8x8.toml).
Prints a table, writes benchmarks/results/dataflows.json.
"""
import argparse
import json
import pathlib
import sys
import tempfile
import time

import numpy as np

from nmforge.gen.config import parse_config
from nmforge.gen.generate import generate
from nmforge.golden import accel as G
from nmforge.golden.cycle_model import predict
from nmforge.golden.gemm import sparse_gemm_int
from nmforge.golden.nm import compress_nm, random_nm_weights
from nmforge.rtl import isa
from nmforge.rtl.isa import Buffer
from nmforge.sim.accel_program import write_program
from nmforge.sim.regression import run_regression

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
DATAFLOWS = ("output_stationary", "dot_product", "weight_stationary")
SHAPES = {"matrix-vector": (1, 1024, 64), "tall-skinny": (1024, 256, 8),
          "long K": (8, 4096, 8), "square": (256, 256, 256)}
PEAK = 8 * 8 * 4   # R x C x M dense-equivalent MACs per cycle
STORE_CHUNK = 1 << 15   # elements per STORE (its count field has 16 bits)


def _ceil(a, b):
    return -(-a // b)


def design(dataflow, shapes):
    """The 8x8 INT8 2:4 accelerator of `dataflow`, buffers sized for the largest of `shapes`."""
    base = parse_config({
        "name": f"df_{dataflow}", "array": {"rows": 8, "cols": 8, "dataflow": dataflow},
        "sparsity": {"nm": "2:4"},
        "pe": {"kind": "int", "act_width": 8, "weight_width": 8, "acc_width": 32,
               "overflow": "wrap"},
        "accelerator": {"stream_width": 64}}, source="benchmark")
    shape = isa.AcceleratorShape.from_config(base)
    act = max(_ceil(m, shape.rows) * k // shape.k_group for m, k, n in shapes)
    weight = max(_ceil(n, shape.cols) * k // shape.span() for m, k, n in shapes)
    depths = {"act_depth": act, "weight_depth": weight,
              "param_depth": max(n for _, _, n in shapes),
              "out_depth": max(m * n for m, _, n in shapes)}
    return parse_config({**base.to_dict(), "accelerator": {"stream_width": 64, **depths}},
                        source="benchmark")


def program(shape, mkn, seed):
    """(commands, data-in words, the int8 result the golden GEMM gives) of one GEMM."""
    m, k, n = mkn
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (m, k))
    values, indices = compress_nm(random_nm_weights(rng, k, n, shape.n, shape.m, 8),
                                  shape.n, shape.m)
    params = (rng.integers(-3000, 3000, n), rng.integers(1, 1 << 16, n), rng.integers(10, 20, n))
    commands, data = [], []
    for buffer, words in ((Buffer.PARAM, G.param_image(*params)), (Buffer.ACT, G.act_image(a, shape)),
                          (Buffer.WEIGHT, G.weight_image(values, indices, shape))):
        commands.append(isa.load(buffer, 0, len(words)))
        data += G.stream_words(words, shape.word_bits(buffer), shape.stream_width)
    commands.append(isa.gemm(0, 0, 0, 0, m, k, n, wait=True))
    commands += [isa.store(first, min(STORE_CHUNK, m * n - first), wait=True)
                 for first in range(0, m * n, STORE_CHUNK)]
    want = G.requantize(sparse_gemm_int(a, values, indices, shape.n, shape.m, 32, "wrap")[0],
                        *params, 8, 32)
    return commands, data, want


def measure(dataflow, shapes, simulate, log=print):
    config = design(dataflow, list(shapes.values()))
    shape = isa.AcceleratorShape.from_config(config)
    work = pathlib.Path(tempfile.gettempdir()) / f"nmforge-bench-dataflows-{config.name}"
    generated = generate(config, work, "accelerator")
    section = json.loads(generated.manifest.read_text())["accelerator"]
    rows = []
    for label, mkn in shapes.items():
        commands, data, want = program(shape, mkn, seed=len(rows) + 1)
        assert not G.hazards(commands, shape)
        model = predict(shape, commands, section["array_latency"], section["result_depth"])
        gemm = next(t for t in model["commands"] if t.opcode == "GEMM")
        macs = mkn[0] * mkn[1] * mkn[2]
        row = {"dataflow": dataflow, "shape": label, "mkn": list(mkn),
               "gemm_cycles": gemm.end - gemm.start, "gemm_beats": gemm.beats,
               "gemm_macs_per_cycle": macs / (gemm.end - gemm.start),
               "model_program_cycles": model["cycles"]}
        row["fraction_of_peak"] = row["gemm_macs_per_cycle"] / PEAK
        if simulate:
            log(f"[bench] {dataflow} {label} {'x'.join(map(str, mkn))}: Verilator "
                f"({model['cycles']} cycles predicted)")
            prog = work / "program.json"
            expected = write_program(prog, shape, commands, data)
            got = np.concatenate([G.unpack_store(p, min(STORE_CHUNK, mkn[0] * mkn[2] - first), 8, 64)
                                  for p, first in zip(expected["packets"],
                                                      range(0, mkn[0] * mkn[2], STORE_CHUNK))])
            assert np.array_equal(got.reshape(mkn[0], mkn[2]), want), "golden program != GEMM"
            result_json = work / "result.json"
            started = time.time()
            result = run_regression(generated.verilog, generated.manifest, work, 1,
                                    options={"program": prog, "stall": 0,
                                             "result_json": result_json, "watchdog": 200000},
                                    log=log)
            if not result.passed:
                sys.exit(f"simulation failed: see {result.log}")
            measured = json.loads(result_json.read_text())
            row |= {"program_cycles": measured["cycles"],
                    "model_error": (model["cycles"] - measured["cycles"]) / measured["cycles"],
                    "sim_seconds": round(time.time() - started, 1)}
        rows.append(row)
    return rows


def synth_row(path):
    path = pathlib.Path(path)
    path = path / "report.json" if path.is_dir() else path
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        sys.exit(f"--synth-report: {path}: not a synthesis report.json ({error})")
    util = report["device_utilization"]
    return {kind: util[kind]["used"] for kind in ("LUT4", "FF", "DSP", "BRAM")} | {
        "fmax_mhz": report["fmax_mhz"], "timing_met": report["timing_met"], "report": str(path)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", help="comma-separated MxKxN (default: the four of SHAPES)")
    parser.add_argument("--no-sim", action="store_true", help="cycle model only")
    parser.add_argument("--synth-report", action="append", default=[], metavar="DATAFLOW=PATH")
    args = parser.parse_args(argv)
    shapes = SHAPES
    if args.shapes:
        try:
            shapes = {s: tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")}
            assert all(len(v) == 3 and min(v) > 0 for v in shapes.values())
        except (ValueError, AssertionError):
            sys.exit(f"--shapes: {args.shapes!r}: expected comma-separated MxKxN, e.g. 1x1024x64")
    synth = {}
    for item in args.synth_report:
        name, _, path = item.partition("=")
        if name not in DATAFLOWS or not path:
            sys.exit(f"--synth-report: {item!r}: expected DATAFLOW=PATH, DATAFLOW one of "
                     f"{', '.join(DATAFLOWS)}")
        synth[name] = synth_row(path)
    rows = [row for dataflow in DATAFLOWS for row in measure(dataflow, shapes, not args.no_sim)]
    print(f"\n{'dataflow':18} {'shape':14} {'MxKxN':>13} {'GEMM cycles':>11} "
          f"{'MACs/cycle':>10} {'of peak':>7} {'program':>9} {'model err':>9}")
    for r in rows:
        print(f"{r['dataflow']:18} {r['shape']:14} {'x'.join(map(str, r['mkn'])):>13} "
              f"{r['gemm_cycles']:>11} {r['gemm_macs_per_cycle']:>10.1f} "
              f"{r['fraction_of_peak']:>7.1%} {r.get('program_cycles', '-'):>9} "
              f"{(format(r['model_error'], '.2%') if 'model_error' in r else '-'):>9}")
    by = {(r["dataflow"], r["shape"]): r for r in rows}
    ratios = {name: {label: by[(name, label)]["gemm_macs_per_cycle"]
                     / by[("output_stationary", label)]["gemm_macs_per_cycle"] for label in shapes}
              for name in DATAFLOWS[1:]}
    for name, of_shape in ratios.items():
        print(f"\n{name} / output_stationary MACs per cycle: "
              + ", ".join(f"{label} {ratio:.2f}x" for label, ratio in of_shape.items()), end="")
    print()
    for name, s in synth.items():
        print(f"{name}: {s['LUT4']} LUT4, {s['FF']} FF, {s['DSP']} DSP, {s['BRAM']} BRAM, "
              f"{s['fmax_mhz']:.2f} MHz{' (timing met)' if s['timing_met'] else ''}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "dataflows.json"
    out.write_text(json.dumps({"rows": rows, "over_output_stationary": ratios, "synth": synth,
                               "peak_dense_eq_macs_per_cycle": PEAK}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
