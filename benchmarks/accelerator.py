"""The accelerator on the 8x8 INT8 array, dense (2:2) and 2:4: a whole GEMM from loads to the
last result out, simulated on Verilator (bit-exact against the golden executor) and predicted by
the cycle model; plus the cycle model's sensitivity to the data-stream width (a roofline PNG).

    python benchmarks/accelerator.py [--shapes 64x256x64,256x1024x256] [--no-sim]
        [--synth-reports ACCEL ARRAY [--synth-only]]

`--synth-reports`: the ECP5 resources and Fmax of the accelerator against its bare array, from
the report.json (or the directory holding it) of `nmforge synth CONFIG --target ecp5` of each,
e.g. out/accel88/synth-ecp5 (examples/accel_nm24_int8_8x8.toml) and out/array88/synth-ecp5
(examples/nm24_int8_8x8.toml, the same array); `--synth-only` prints just that comparison
(benchmarks/results/accelerator_synth.json).

Program (double-buffered, golden.accel.hazards checks it has no hazard): PARAM and the first
A row panel; for row panel 0 the W column panels are loaded one by one, each GEMM'd while the
next one loads; then per row panel i a GEMM over all columns while the next A panel loads into
the other ACT half and the previous panel's results are stored from the other OUT half.
Prints a table and writes benchmarks/results/accelerator.json (+ accelerator_roofline.png).
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


def design(nm, stream_width, mdim, k, ndim):
    """The 8x8 INT8 accelerator config sized for one GEMM shape (two ACT halves of one row panel,
    all of W, two OUT halves of one row panel's results)."""
    n, m = (int(x) for x in nm.split(":"))
    groups = k // m
    return parse_config({
        "name": f"accel_{nm.replace(':', '')}_8x8",
        "array": {"rows": 8, "cols": 8, "dataflow": "output_stationary"},
        "sparsity": {"nm": nm},
        "pe": {"kind": "int", "act_width": 8, "weight_width": 8, "acc_width": 32,
               "overflow": "wrap"},
        "accelerator": {"stream_width": stream_width, "act_depth": 2 * groups,
                        "weight_depth": groups * ndim // 8, "param_depth": ndim,
                        "out_depth": 2 * 8 * ndim}}, source="benchmark")


def program(shape, a, values, indices, params):
    """(commands, data-in words) of the double-buffered GEMM described in the module docstring;
    results land row panel by row panel (row panel 0 column block by column block)."""
    mdim, k = a.shape
    ndim = values.shape[1]
    groups = k // shape.m
    panels, col_panels = mdim // 8, ndim // 8
    act = G.act_image(a, shape)
    weights = G.weight_image(values, indices, shape)
    commands, data = [], []

    def load(buffer, addr, words):
        commands.append(isa.load(buffer, addr, len(words)))
        data.extend(G.stream_words(words, shape.word_bits(buffer), shape.stream_width))

    def region(i):
        return (i % 2) * 8 * ndim

    load(Buffer.PARAM, 0, G.param_image(*params))
    load(Buffer.ACT, 0, act[:groups])
    for j in range(col_panels):
        load(Buffer.WEIGHT, j * groups, weights[j * groups:(j + 1) * groups])
        if j == col_panels - 1 and panels > 1:
            load(Buffer.ACT, groups, act[groups:2 * groups])
        commands.append(isa.gemm(0, j * groups, j * 8, j * 64, 8, k, 8, wait=True))
    for i in range(1, panels):
        commands.append(isa.gemm((i % 2) * groups, 0, 0, region(i), 8, k, ndim, wait=True))
        if i + 1 < panels:
            load(Buffer.ACT, ((i + 1) % 2) * groups, act[(i + 1) * groups:(i + 2) * groups])
        commands.append(isa.store(region(i - 1), 8 * ndim))
    commands.append(isa.store(region(panels - 1), 8 * ndim, wait=True))
    return commands, data


def run_one(nm, stream_width, shape_mkn, sized_for, simulate, seed=1, log=print):
    """One GEMM on the design sized for the largest shape `sized_for` (one build per design)."""
    mdim, k, ndim = shape_mkn
    config = design(nm, stream_width, *sized_for)
    shape = isa.AcceleratorShape.from_config(config)
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (mdim, k))
    w = random_nm_weights(rng, k, ndim, shape.n, shape.m, 8)
    values, indices = compress_nm(w, shape.n, shape.m)
    params = (rng.integers(-3000, 3000, ndim), rng.integers(1, 1 << 16, ndim),
              rng.integers(10, 20, ndim))
    commands, data = program(shape, a, values, indices, params)
    hazards = G.hazards(commands, shape)
    assert not hazards, f"benchmark program has hazards: {hazards[:3]}"
    row = {"design": nm, "stream_width": stream_width, "shape": list(shape_mkn),
           "commands": len(commands), "data_in_words": len(data)}
    work = pathlib.Path(tempfile.gettempdir()) / f"nmforge-bench-accel-{config.name}-{stream_width}"
    generated = generate(config, work, "accelerator")
    section = json.loads(generated.manifest.read_text())["accelerator"]
    model = predict(shape, commands, section["array_latency"], section["result_depth"])
    row |= {"model_cycles": model["cycles"], "array_latency": section["array_latency"],
            "result_depth": section["result_depth"]}
    useful = mdim * k * ndim
    peak = 8 * 8 * shape.m
    if simulate:
        log(f"[bench] {nm} {mdim}x{k}x{ndim} stream {stream_width}: golden executor, then "
            f"Verilator ({model['cycles']} cycles predicted)")
        prog = work / "program.json"
        expected = write_program(prog, shape, commands, data)
        # the golden executor's results equal the plain GEMM (checked here once per run)
        acc, _ = sparse_gemm_int(a, values, indices, shape.n, shape.m, 32, "wrap")
        want = G.requantize(acc, *params, 8, 32)
        got = np.concatenate([G.unpack_store(p, 8 * ndim, 8, stream_width).reshape(8, ndim)
                              for p in expected["packets"][1:]])
        first = G.unpack_store(expected["packets"][0], 8 * ndim, 8, stream_width)
        first = first.reshape(ndim // 8, 8, 8).transpose(1, 0, 2).reshape(8, ndim)
        assert np.array_equal(np.concatenate([first, got]), want), "golden program != GEMM"
        result_json = work / "result.json"
        started = time.time()
        result = run_regression(generated.verilog, generated.manifest, work, seed,
                                options={"program": prog, "stall": 0,
                                         "result_json": result_json, "watchdog": 100000},
                                log=log)
        if not result.passed:
            sys.exit(f"simulation failed: see {result.log}")
        measured = json.loads(result_json.read_text())
        row |= {"cycles": measured["cycles"], "array_beats": measured["array_beats"],
                "sim_seconds": round(time.time() - started, 1)}
        row["model_error"] = (model["cycles"] - measured["cycles"]) / measured["cycles"]
    cycles = row.get("cycles", model["cycles"])
    row["utilization"] = model["array_beats"] / cycles
    row["dense_eq_macs_per_cycle"] = useful / cycles
    row["fraction_of_peak"] = useful / cycles / peak
    row["peak_dense_eq_macs_per_cycle"] = peak
    return row


def roofline(shape_mkn, timing, widths=(8, 16, 32, 64, 128)):
    """Cycle-model sweep of the data-stream width (widths other than 32/64 are model-only);
    `timing[nm]` = (array_latency, result_depth) from the generated manifest."""
    points = []
    for nm in ("2:2", "2:4"):
        for width in widths:
            mdim, k, ndim = shape_mkn
            config = design(nm, 64, mdim, k, ndim)
            base = isa.AcceleratorShape.from_config(config)
            shape = isa.AcceleratorShape(**{**base.to_dict(), "stream_width": width})
            rng = np.random.default_rng(0)
            w = random_nm_weights(rng, k, ndim, shape.n, shape.m, 8)
            values, indices = compress_nm(w, shape.n, shape.m)
            a = np.zeros((mdim, k), dtype=np.int64)
            commands, _ = program(shape, a, values, indices,
                                  (np.zeros(ndim), np.ones(ndim), np.zeros(ndim)))
            model = predict(shape, commands, *timing[nm])
            macs = mdim * k * ndim / model["cycles"]
            points.append({"design": nm, "stream_width": width, "bytes_per_cycle": width / 8,
                           "dense_eq_macs_per_cycle": macs,
                           "fraction_of_peak": macs / (64 * shape.m)})
    return points


SYNTH_KINDS = ("LUT4", "FF", "DSP", "BRAM")


def _report(path):
    path = pathlib.Path(path)
    path = path / "report.json" if path.is_dir() else path
    try:
        return json.loads(path.read_text()), path
    except (OSError, ValueError) as error:
        sys.exit(f"--synth-reports: {path}: not a synthesis report.json ({error})")


def synth_comparison(accel_path, array_path):
    """{accelerator, array: {LUT4, FF, DSP, BRAM (device utilization used), fmax_mhz, timing_met,
    report}, overhead: {kind: accelerator / array - 1}} of two `nmforge synth` ECP5 reports."""
    out = {}
    for name, path in (("accelerator", accel_path), ("array", array_path)):
        report, where = _report(path)
        if report.get("target") != "ecp5":
            sys.exit(f"--synth-reports: {where}: target {report.get('target')!r}, expected ecp5")
        util = report["device_utilization"]
        out[name] = {kind: util[kind]["used"] for kind in SYNTH_KINDS}
        out[name] |= {"top": report["top"], "device": report["device"], "fmax_mhz": report["fmax_mhz"],
                      "clock_mhz": report["clock_mhz"], "timing_met": report["timing_met"],
                      "critical_path": report.get("critical_path"), "report": str(where)}
    out["overhead"] = {kind: (out["accelerator"][kind] / out["array"][kind] - 1) if out["array"][kind] else None
                       for kind in SYNTH_KINDS}
    return out


def print_synth(comparison):
    device = f"ECP5 ({comparison['accelerator']['device']})"
    print(f"\n{device:36} {'LUT4':>7} {'FF':>7} {'DSP':>5} {'BRAM':>5} {'Fmax':>9}")
    for name in ("accelerator", "array"):
        r = comparison[name]
        fmax = f"{r['fmax_mhz']:.1f} MHz" if r["fmax_mhz"] is not None else "-"
        print(f"{name + ' (' + r['top'] + ')':36} {r['LUT4']:>7} {r['FF']:>7} {r['DSP']:>5} "
              f"{r['BRAM']:>5} {fmax:>9}")
    over = comparison["overhead"]
    print("accelerator over bare array: " + ", ".join(
        f"{kind} {100 * over[kind]:+.1f}%" for kind in SYNTH_KINDS if over[kind] is not None))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="64x256x64,256x1024x256")
    parser.add_argument("--no-sim", action="store_true", help="cycle model only")
    parser.add_argument("--synth-reports", nargs=2, metavar=("ACCEL", "ARRAY"),
                        help="report.json (or its directory) of `nmforge synth --target ecp5` of the "
                             "accelerator and of its bare array")
    parser.add_argument("--synth-only", action="store_true", help="only the --synth-reports comparison")
    args = parser.parse_args(argv)
    if args.synth_only and not args.synth_reports:
        parser.error("--synth-only needs --synth-reports")
    synth = synth_comparison(*args.synth_reports) if args.synth_reports else None
    if args.synth_only:
        print_synth(synth)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "accelerator_synth.json").write_text(json.dumps(synth, indent=2))
        print(f"wrote {RESULTS / 'accelerator_synth.json'}")
        return
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    rows = []
    for shape_mkn in shapes:
        for nm in ("2:4", "2:2"):
            row = run_one(nm, 64, shape_mkn, max(shapes), not args.no_sim)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'design':6} {'M x K x N':>14} {'cycles':>8} {'model':>8} {'err':>7} "
          f"{'util':>6} {'MAC/cyc':>8} {'of peak':>7}")
    for r in rows:
        err = f"{100 * r['model_error']:+.2f}%" if "model_error" in r else "-"
        print(f"{r['design']:6} {'x'.join(map(str, r['shape'])):>14} {r.get('cycles', '-'):>8} "
              f"{r['model_cycles']:>8} {err:>7} {r['utilization']:6.3f} "
              f"{r['dense_eq_macs_per_cycle']:8.1f} {100 * r['fraction_of_peak']:6.1f}%")
    for big in shapes[-1:]:
        pairs = {r["design"]: r for r in rows if tuple(r["shape"]) == big}
        if "2:4" in pairs and "2:2" in pairs:
            key = "cycles" if "cycles" in pairs["2:4"] else "model_cycles"
            ratio = pairs["2:4"][key] / pairs["2:2"][key]
            print(f"2:4 / dense cycles on {'x'.join(map(str, big))}: {ratio:.3f}")
    timing = {r["design"]: (r["array_latency"], r["result_depth"]) for r in rows}
    sweep = roofline(shapes[-1], timing)
    below = [p["stream_width"] for p in sweep if p["design"] == "2:4" and p["fraction_of_peak"] < 0.9]
    print("stream width sweep (cycle model, 2:4): " + ", ".join(
        f"{p['stream_width']} b: {100 * p['fraction_of_peak']:.1f}%" for p in sweep
        if p["design"] == "2:4") + f"; below 90 % at {max(below) if below else 'none'} bits")
    if synth:
        print_synth(synth)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "accelerator.json").write_text(json.dumps({"runs": rows, "stream_sweep": sweep,
                                                          **({"ecp5": synth} if synth else {})},
                                                         indent=2))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for nm in ("2:2", "2:4"):
        pts = [p for p in sweep if p["design"] == nm]
        ax.plot([p["bytes_per_cycle"] for p in pts], [p["dense_eq_macs_per_cycle"] for p in pts],
                "o-", label=f"{nm} (peak {64 * (2 if nm == '2:2' else 4)})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("data-in bytes / cycle")
    ax.set_ylabel("dense-eq MACs / cycle")
    ax.set_title(f"8x8 INT8 accelerator, {'x'.join(map(str, shapes[-1]))} (cycle model)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "accelerator_roofline.png", dpi=120)
    print(f"wrote {RESULTS / 'accelerator.json'} and accelerator_roofline.png")


if __name__ == "__main__":
    main()
