"""`nmforge compile MODEL.py -o DIR --config DESIGN.toml` and `nmforge run PROGRAM --on golden`.

compile: capture, prune, quantize and emit a program; any bad input (model file, unsupported op,
config, pattern, buffers too small) prints one line and exits 2 with nothing written.
run: runs the program on a batch of inputs (a .npy file or the model file's test_data()), with
a progress bar; prints a per-layer table and writes a JSON report.
"""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from .errors import CompileError

EXIT_BAD_INPUT = 2
TARGETS = ("golden", "sim")


def add_compile_arguments(parser):
    parser.add_argument("model", metavar="MODEL.py", help="model file: model(), example_input(), "
                        "optionally calibration_data(), test_data()")
    parser.add_argument("--config", required=True, metavar="DESIGN.toml",
                        help="accelerator design config (with an [accelerator] table)")
    parser.add_argument("-o", "--output", metavar="DIR", help="program directory (default: "
                        "out/<model file name>)")
    parser.add_argument("--batch", type=int, help="inputs per pass (default: the largest <= 16 "
                        "that fits the buffers)")
    parser.add_argument("--pattern", action="append", default=[], metavar="LAYER=N:M",
                        help="per-layer N:M pattern (run-time designs), repeatable")
    return parser


def add_run_arguments(parser):
    parser.add_argument("program", metavar="PROGRAM", help="program directory from nmforge compile")
    parser.add_argument("--on", choices=TARGETS, default="golden",
                        help="where to run: the golden executor (numpy, bit-exact) or the "
                        "Verilator-simulated accelerator (checked against golden bit for bit)")
    parser.add_argument("--stall", type=float, default=0.0, help="--on sim: pause probability "
                        "on every stream (default 0: full speed, for cycle counts)")
    parser.add_argument("--seed", type=int, default=1, help="--on sim: random seed (default 1)")
    parser.add_argument("--inputs", metavar="FILE.npy", help="float inputs (default: the model "
                        "file's test_data())")
    parser.add_argument("--limit", type=int, help="run only the first LIMIT inputs")
    parser.add_argument("--report", metavar="FILE.json", help="JSON report (default: "
                        "PROGRAM/report.json)")
    return parser


def _error(text) -> int:
    print(f"nmforge: error: {text}", file=sys.stderr)
    return EXIT_BAD_INPUT


def cmd_compile(args) -> int:
    from ..gen.config import ConfigError, load_config
    from .capture import load_model_file
    from .emit import emit_program, write_program
    from .pipeline import compile_model
    try:
        config = load_config(args.config)
        patterns = {}
        for item in args.pattern:
            layer, sep, pattern = item.partition("=")
            if not sep:
                raise CompileError(f"--pattern {item!r}: expected LAYER=N:M")
            patterns[layer] = pattern
        model_file = load_model_file(args.model)
        calibration = model_file.calibration_data() if model_file.calibration_data else None
        compiled = compile_model(model_file.model(), model_file.example_input(), config,
                                 calibration=calibration, patterns=patterns)
        program, images = emit_program(compiled, args.batch)
    except (ConfigError, CompileError) as error:
        return _error(error)
    program["model"] = str(pathlib.Path(args.model).resolve())
    out = pathlib.Path(args.output or pathlib.Path("out") / pathlib.Path(args.model).stem)
    write_program(out, program, images)
    for line in compiled.log:
        print(line)
    print(f"wrote {out}/program.json and images.npz: {len(program['layers'])} GEMM layers on the "
          f"array, {len(program['host_ops'])} host ops "
          f"({', '.join(sorted({h['op'] for h in program['host_ops']}))}), batch {program['batch']}")
    return 0


def cmd_run(args) -> int:
    from tqdm import tqdm
    from .runtime import dequantize, load_program, predict_cycles, record_device_run
    from .report import layer_report, format_table
    try:
        program = load_program(args.program)
        x, labels = _inputs(args, program)
    except CompileError as error:
        return _error(error)
    bar = tqdm(total=len(x), unit="input", desc=f"run --on {args.on}", file=sys.stderr)
    report = layer_report(program, len(x))
    report["on"] = args.on
    if args.on == "sim":
        from .sim import run_on_sim
        bar.set_description("recording on golden")
        simulating = []

        def sim_progress(done, total, step):
            if not simulating:                 # the simulation's first report: a fresh bar
                simulating.append(True)
                bar.reset(total)
                bar.set_description("run --on sim")
            _advance(bar, done, step)
        y, sim = run_on_sim(program, x, pathlib.Path(args.program) / "sim", seed=args.seed,
                            stall=args.stall, progress=sim_progress,
                            record_progress=lambda done, total, step: _advance(bar, done, step),
                            log=lambda line: bar.write(line, file=sys.stderr))
        bar.close()
        commands, run_labels = sim.pop("recorded")
        report["sim"] = sim
        if not sim["passed"]:
            print(f"nmforge: the simulated accelerator differs from the golden executor; "
                  f"log {sim['log']}", file=sys.stderr)
            return 1
        report["cycles"] = sim["cycles"]
    else:
        y, commands, _, run_labels = record_device_run(
            program, x, progress=lambda done, total, step: _advance(bar, done, step))
        bar.close()
    model = predict_cycles(program, commands, run_labels)
    report["cycle_model"] = model
    report.setdefault("cycles", model["cycles"])
    report["cycles_per_input"] = report["cycles"] / len(x)
    report["macs_per_cycle"] = report["dense_macs"] / report["cycles"]
    for layer in report["layers"]:
        layer["cycles_model"] = model["busy"].get(layer["name"], 0)
    if labels is not None:
        report["accuracy"] = float((dequantize(program, y).argmax(axis=1) == labels).mean())
    print(format_table(report))
    path = pathlib.Path(args.report or pathlib.Path(args.program) / "report.json")
    path.write_text(json.dumps(report, indent=1) + "\n")
    np.save(pathlib.Path(args.program) / f"outputs-{args.on}.npy", y)
    print(f"wrote {path}")
    return 0


def _advance(bar, done, step):
    """Progress bar: `done` inputs complete, `step` (a layer, host op or "sim") running."""
    bar.set_postfix_str(step, refresh=False)
    bar.update(done - bar.n)


def _inputs(args, program):
    """(x, labels or None) from --inputs or the model file's test_data()."""
    if args.inputs:
        try:
            x = np.load(args.inputs)
        except (OSError, ValueError) as error:
            raise CompileError(f"--inputs {args.inputs}: not a readable .npy file "
                               f"({type(error).__name__})") from None
        labels = None
    else:
        from .capture import load_model_file
        model_file = load_model_file(program.spec.get("model", ""))
        if model_file.test_data is None:
            raise CompileError(f"{model_file.path}: no test_data(); pass --inputs FILE.npy")
        x, labels = model_file.test_data()
        x = x.detach().numpy() if hasattr(x, "detach") else np.asarray(x)
        labels = np.asarray(labels)
    sample = tuple(program.spec["input"]["sample_shape"])
    if x.ndim < 1 or tuple(x.shape[1:]) != sample:
        raise CompileError(f"inputs of shape {x.shape}: the program takes (rows, "
                           f"{', '.join(map(str, sample))})")
    if args.limit is not None:
        if args.limit < 1:
            raise CompileError(f"--limit {args.limit}: allowed: an integer >= 1")
        x = x[:args.limit]
        labels = None if labels is None else labels[:args.limit]
    return x, labels
