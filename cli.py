"""The `nmforge` command line: generate, sim, synth and flow (all three in one).

Every command validates its input before it writes anything: a bad config, a bad argument or an
output directory that cannot be written prints one line naming the field or argument and what is
allowed, and exits with status 2. Argument checks are declared per command (`checks` in its
defaults: functions of (config, args) raising ValueError); `-o/--output` is checked for every
command that has it, before its own checks.
"""
import argparse
import json
import os
import pathlib
import sys
import time

from . import __version__
from .gen.config import ConfigError, load_config
from .gen.elaborate import BLOCKS
from .gen.generate import generate
from .gen.output_dir import check_output_dir
from .gen.package import cmd_package
from .fpga.board import BOARDS, cmd_build
from .fpga.sweep import add_sweep_arguments, cmd_sweep
from .compiler.command import add_compile_arguments, add_run_arguments, cmd_compile, cmd_run
from .sim.mutate import add_mutate_arguments, cmd_mutate

EXIT_BAD_INPUT = 2


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if getattr(args, "output", None) is not None:
            check_output_dir(args.output)
        if args.command in (cmd_sweep, cmd_compile, cmd_run):  # not a design config
            return args.command(args)
        config = load_config(args.config)
        out_dir = pathlib.Path(args.output if args.output is not None else pathlib.Path("out") / config.name)
        if args.output is None:
            check_output_dir(out_dir)
        for check in args.checks:
            check(config, args)
    except (ConfigError, ValueError) as error:
        print(f"nmforge: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return args.command(config, out_dir, args)


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit status 2."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _parser():
    parser = _OneLineParser(prog="nmforge", description="Generate, verify and synthesize "
                            "N:M structured-sparse MAC arrays from one TOML config.")
    parser.add_argument("--version", action="version", version=f"nmforge {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name, function, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("config", metavar="CONFIG", help="design config (TOML)")
        sub.add_argument("-o", "--output", metavar="DIR", help="output directory (default: out/<name>)")
        sub.set_defaults(command=function, checks=())
        return sub

    gen = command("generate", cmd_generate, "write <name>.v and manifest.json")
    gen.add_argument("--block", choices=BLOCKS, default="array", help="generate one block alone")
    sim = command("sim", cmd_sim, "generate and run the cocotb regression on Verilator")
    _sim_options(sim)
    sim.add_argument("--block", choices=BLOCKS, default="array", help="verify one block alone")
    _add_checks(sim, check_mac_testbench)
    synth = command("synth", cmd_synth, "synthesize and place-and-route with Yosys + nextpnr")
    _synth_options(synth)
    build = command("build", cmd_build, "board top with a UART host link, placed and packed to a bitstream")
    build.add_argument("--board", choices=BOARDS, required=True)
    build.add_argument("--pnr-seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    command("package", cmd_package, "write a FuseSoC CAPI2 core with the Verilog, manifest and Verilator waivers")
    flow = command("flow", cmd_flow, "generate + simulate + synthesize (default target ecp5), "
                   "with a summary (DIR/summary.json)")
    _sim_options(flow)
    _synth_options(flow, default_target="ecp5")
    mutate = command("mutate", cmd_mutate, "mutation testing: inject Yosys mutants, run the default "
                     "regression on each (Dask), report killed / survived / timed out / equivalent")
    add_mutate_arguments(mutate)
    sweep = commands.add_parser("sweep", help="design-space sweep (generate + synth per point) on Dask",
                                description="design-space sweep (generate + synth per point) on Dask")
    add_sweep_arguments(sweep)
    sweep.set_defaults(command=cmd_sweep, checks=())
    for name, add, function, help_text in (
            ("compile", add_compile_arguments, cmd_compile,
             "compile a PyTorch model file to an accelerator program (prune, quantize, emit)"),
            ("run", add_run_arguments, cmd_run,
             "run a program on a batch of inputs: per-layer table and JSON report")):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add(sub)
        sub.set_defaults(command=function, checks=())
    return parser


def _add_checks(sub, *checks):
    """Run `checks` (functions of (config, args) raising ValueError) before `sub`'s command."""
    sub.set_defaults(checks=(*sub.get_default("checks"), *checks))


def _int_in(low, high=None):
    """An argparse type: an integer in low..high (no upper bound when high is None)."""
    allowed = f"an integer {low}..{high}" if high is not None else f"an integer >= {low}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; allowed: {allowed}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: {allowed}")
        return value
    return parse


def _probability(text):
    """An argparse type: a probability 0 <= p < 1 (1 would stall a stream forever)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; allowed: 0 <= P < 1") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{value:g} is out of range; allowed: 0 <= P < 1")
    return value


def _sim_options(sub):
    sub.add_argument("--seed", type=_int_in(0, 2**32 - 1), help="random seed (default: a fresh one, printed)")
    sub.add_argument("--waves", action="store_true", help="record a waveform (dump.fst)")
    sub.add_argument("--gemms", type=_int_in(1, 10000), default=4,
                     help="random GEMMs per regression (default 4)")
    sub.add_argument("--stall", type=_probability, default=0.3,
                     help="probability of a pause on each valid and each ready, 0 <= P < 1 (default 0.3)")
    sub.add_argument("--build-dir", metavar="DIR",
                     help="Verilator build cache, shared by every run of the same Verilog "
                          "(default: $NMFORGE_BUILD_DIR, else ~/.cache/nmforge/verilator)")
    sub.add_argument("--patterns", metavar="P,P,...",
                     help="run-time designs: the patterns successive GEMMs take in turn, e.g. "
                          "4:8,1:8,dense (default: every pattern of the design)")
    _add_checks(sub, check_patterns)


def _synth_options(sub, default_target=None):
    from .fpga import TARGETS
    from .fpga.devices import device_names
    sub.add_argument("--target", choices=TARGETS, default=default_target, required=default_target is None,
                     help="FPGA family" + (f" (default {default_target})" if default_target else ""))
    sub.add_argument("--device", metavar="DEVICE",
                     help="device of the target (default: the target's first): "
                          + "; ".join(f"{t}: {', '.join(device_names(t))}" for t in TARGETS))
    sub.add_argument("--pnr-seed", type=_int_in(0, 2**31 - 1), default=1, help="nextpnr placement seed (default 1)")
    _add_checks(sub, check_device)


def check_device(config, args):
    """--device names a device of --target (which argparse cannot check: it depends on --target)."""
    from .fpga.devices import resolve_device
    resolve_device(args.target, args.device)


def check_patterns(config, args):
    """--patterns: only on a run-time design, each entry a pattern of its table (golden.nm)."""
    from .golden.nm import parse_runtime_pattern, pattern_name, runtime_patterns
    if args.patterns is None:
        return
    if not config.runtime:
        raise ValueError(f"--patterns: {config.name} is not a run-time design (sparsity.runtime = false); "
                         f"allowed: only with sparsity.runtime = true")
    names = ", ".join(pattern_name(p) for p in runtime_patterns(config.n, config.m))
    entries = args.patterns.split(",")
    if any(not entry.strip() for entry in entries):
        raise ValueError(f"--patterns: {args.patterns!r} has an empty entry; allowed: a comma-separated "
                         f"list of {names}")
    for entry in entries:
        try:
            parse_runtime_pattern(entry, config.n, config.m)
        except ValueError as error:
            raise ValueError(f"--patterns: {error}") from None


def check_mac_testbench(config, args):
    """--block mac: the PE kind has a MAC-level testbench."""
    from .sim.regression import MAC_TESTBENCHES
    if args.block == "mac" and config.pe_kind not in MAC_TESTBENCHES:
        raise ValueError(f"--block mac: no MAC-level testbench for pe.kind {config.pe_kind!r} (its MAC "
                         f"is verified with --block pe); allowed: {', '.join(MAC_TESTBENCHES)}")


def cmd_generate(config, out_dir, args) -> int:
    generated = generate(config, out_dir, args.block)
    print(f"wrote {generated.verilog} and {generated.manifest} "
          f"(latency {generated.info['latency_cycles']} cycles)")
    return 0


def cmd_sim(config, out_dir, args) -> int:
    return 0 if _simulate(config, out_dir, args, args.block).passed else 1


def cmd_synth(config, out_dir, args) -> int:
    generated = generate(config, out_dir)
    return 0 if _synthesize(config, generated, out_dir, args) else 1


def cmd_flow(config, out_dir, args) -> int:
    steps = time.monotonic()
    print(f"[1/3] generate {config.name} ({config.rows}x{config.cols}, {config.nm}, "
          f"{config.pe_summary})", flush=True)
    generated = generate(config, out_dir)
    print(f"      {generated.verilog}, latency {generated.info['latency_cycles']} cycles", flush=True)
    print(f"[2/3] simulate: cocotb on Verilator against the golden model", flush=True)
    # the array regression; an accelerator's array is built beside it, not over its Verilog
    sim = _simulate(config, out_dir / "array" if config.accelerator else out_dir, args, "array")
    if not sim.passed:
        return 1
    print(f"[3/3] synthesize for {args.target}", flush=True)
    report = _synthesize(config, generated, out_dir, args)
    if report is None:
        return 1
    summary = {"config": str(args.config), "verilog": str(generated.verilog),
               "latency_cycles": generated.info["latency_cycles"],
               "simulation": {"passed": sim.passed, "seed": sim.seed, "tests": sim.tests},
               "synthesis": {key: report.get(key) for key in ("target", "device", "fmax_mhz", "timing_met")}
               | {"resources": {k: report["resources"][k] for k in ("LUT4", "LUT4_total", "FF", "DSP", "BRAM")}},
               "dense_macs_per_cycle": config.dense_macs_per_cycle,
               "elapsed_s": round(time.monotonic() - steps, 1)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    res = summary["synthesis"]["resources"]
    print(f"\nsummary for {config.name}: simulation PASSED (seed {sim.seed}); {args.target} "
          f"{res['LUT4_total']} LUT4, {res['FF']} FF, {res['DSP']} DSP, Fmax {report['fmax_mhz']} MHz "
          f"(target {config.clock_mhz} MHz {'met' if report['timing_met'] else 'NOT met'}); "
          f"{config.dense_macs_per_cycle} dense-equivalent MACs/cycle; {summary['elapsed_s']} s; "
          f"{out_dir / 'summary.json'}")
    return 0


def _simulate(config, out_dir, args, block):
    from .sim.regression import run_regression
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(3), "little")
    generated = generate(config, out_dir, block)
    print(f"[sim] {generated.info['module']}: seed {seed}", flush=True)
    options = {"gemms": args.gemms, "stall": args.stall}
    if getattr(args, "patterns", None):
        options["patterns"] = args.patterns
    result = run_regression(generated.verilog, generated.manifest, out_dir, seed, args.waves,
                            options, log=_log, build_dir=args.build_dir)
    if result.passed:
        print(f"[sim] PASSED {result.tests} test(s), seed {seed}"
              + (f", waves {result.waves}" if result.waves else ""), flush=True)
    else:
        print(f"[sim] FAILED: seed {seed}; log {result.log}; waves {result.waves}\n"
              f"      reproduce: nmforge sim {args.config} --seed {seed} --waves"
              + (f" --patterns {args.patterns}" if getattr(args, "patterns", None) else ""),
              flush=True)
    return result


def _synthesize(config, generated, out_dir, args):
    """Synthesize for ``args.target`` / ``args.device`` into ``out_dir/synth-<target>`` (the default
    device) or ``out_dir/synth-<target>-<device>``; print the report table; ``None`` on failure."""
    from .fpga import FlowError, format_report, synthesize
    from .fpga.devices import FAMILIES, resolve_device
    device = resolve_device(args.target, getattr(args, "device", None))
    synth_dir = f"synth-{args.target}"
    if device != FAMILIES[args.target]["default_device"]:
        synth_dir += "-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in device.lower())
    try:
        report = synthesize(generated.verilog, generated.info["module"], args.target,
                            out_dir / synth_dir, clock_mhz=config.clock_mhz, device=device,
                            seed=args.pnr_seed, log=_log)
    except FlowError as error:
        print(f"nmforge: synthesis failed: {error}", file=sys.stderr)
        return None
    print(format_report(report), flush=True)
    return report


def _log(line):
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
