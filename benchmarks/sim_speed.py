"""Speed of `nmforge run --on sim`: the 2:4 digits CNN on the 8x8 accelerator over the test set.

Compiles examples/models/digits_cnn.py for examples/models/accel_nm24_int8_8x8.toml into
benchmarks/results/sim_speed/cnn and runs `nmforge run ... --on sim --limit INPUTS` as a
subprocess: wall time of the whole command (build included when the Verilog is not cached yet),
its CPU time (the command and its children: recording, Verilator build, simulation; what one
core would have to do), the simulation's own wall time (cocotb's results.xml) and the simulated
cycles per second of it. With --before REF it first runs the same command with the testbench
files (sim/tb_accel.py, sim/streams.py, sim/axis.py, sim/harness.py) of git revision REF over
--before-inputs inputs, everything else (RTL, compiler) as in this tree, so both simulate the
same Verilog, and prints the cycles/s ratio of the two runs. Prints a table and writes
benchmarks/results/sim_speed.json.

    python benchmarks/sim_speed.py [--inputs 360] [--before f45eaca --before-inputs 32]
"""
import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
MODEL = REPO / "examples" / "models" / "digits_cnn.py"
DESIGN = REPO / "examples" / "models" / "accel_nm24_int8_8x8.toml"
TESTBENCH_FILES = ("sim/tb_accel.py", "sim/streams.py", "sim/axis.py", "sim/harness.py")


def nmforge(args, env=None):
    """Run `nmforge ARGS` in a subprocess: (wall s, CPU s of it and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import sys; from nmforge.cli import main; "
                    "sys.exit(main(sys.argv[1:]))", *args], check=True, env=env)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(program, inputs, label, env=None):
    report = program / f"report-{label}.json"
    wall, cpu = nmforge(["run", str(program), "--on", "sim", "--limit", str(inputs),
                         "--report", str(report)], env)
    figures = json.loads(report.read_text())
    case = ElementTree.parse(program / "sim" / "run" / "results.xml").find(".//testcase")
    sim_s = float(case.get("time"))
    cycles = figures["sim"]["cycles"]
    return {"testbench": label, "inputs": inputs, "cycles": cycles, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "sim_wall_s": round(sim_s, 1),
            "cycles_per_s": round(cycles / sim_s), "accuracy": figures.get("accuracy")}


def testbench_of(ref, into):
    """A copy of this tree's package with the testbench files of git revision `ref`: the
    directory to put first on PYTHONPATH."""
    package = into / "nmforge"
    shutil.copytree(REPO, package, ignore=shutil.ignore_patterns(
        ".venv", ".git", "out", "results", "__pycache__", "sim_build"))
    for name in TESTBENCH_FILES:
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:{name}"], check=True,
                              capture_output=True, text=True).stdout
        (package / name).write_text(text)
    return into


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=360, help="test images (default 360)")
    parser.add_argument("--before", metavar="REF", help="also run the testbench of this git "
                        "revision (e.g. f45eaca, before the event-driven drivers)")
    parser.add_argument("--before-inputs", type=int, default=32,
                        help="test images of the --before run (default 32)")
    args = parser.parse_args()
    program = RESULTS / "sim_speed" / "cnn"
    nmforge(["compile", str(MODEL), "--config", str(DESIGN), "-o", str(program)])
    rows = []
    if args.before:
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "PYTHONPATH": str(testbench_of(args.before, pathlib.Path(tmp)))}
            rows.append(measure(program, args.before_inputs, f"before ({args.before})", env))
        rows.append(measure(program, args.before_inputs, "this tree"))
    if not args.before or args.inputs != args.before_inputs:
        rows.append(measure(program, args.inputs, "this tree"))
    print(f"\n{'testbench':<22}{'inputs':>7}{'cycles':>10}{'wall s':>9}{'CPU s':>8}"
          f"{'sim wall s':>12}{'cycles/s':>10}")
    for r in rows:
        print(f"{r['testbench']:<22}{r['inputs']:>7}{r['cycles']:>10}{r['wall_s']:>9}"
              f"{r['cpu_s']:>8}{r['sim_wall_s']:>12}{r['cycles_per_s']:>10}")
    result = {"runs": rows, "load_average": os.getloadavg(), "cpus": os.cpu_count()}
    if args.before:
        result["speedup"] = rows[1]["cycles_per_s"] / rows[0]["cycles_per_s"]
        print(f"cycles/s of this tree's testbench: {result['speedup']:.2f}x the one of "
              f"{args.before} (same Verilog, same inputs, back to back)")
    print(f"load average {result['load_average'][0]:.1f} on {result['cpus']} cores")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "sim_speed.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
