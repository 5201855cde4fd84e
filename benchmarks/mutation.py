"""The mutation score of the default regression, as a tracked figure.

Runs `nmforge mutate` (sim/mutate.py: Yosys mutants, each simulated with the regression that
`nmforge sim CONFIG` runs by default, survivors put to Yosys' equivalence checks) on the int 2:4
(examples/nm24_int8_4x4.toml), run-time 4:8 (examples/rt48_int8_4x4.toml), FP8 E4M3
(examples/fp8e4m3_nm24_4x4.toml) and MXFP4 (examples/mxfp8_nm24_2x2.toml with format = "mxfp4")
designs; prints each table and writes benchmarks/results/mutation.json. Campaigns are cached per
mutant under out/mutation/<name> (a re-run resumes). Exits with status 1 when a design's score is
below 95 % or a mutant timed out.

    python benchmarks/mutation.py [--count 40] [--seed 1] [--designs int,rt48,fp8,mxfp4] [--scheduler tcp://...]
"""
import argparse
import json
import pathlib
import sys
import time

from nmforge.gen.config import load_config, parse_config
from nmforge.sim.mutate import format_table, run_mutate

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
REQUIRED_SCORE = 0.95


def mxfp4_config():
    table = load_config(REPO / "examples" / "mxfp8_nm24_2x2.toml").to_dict()
    table["name"] = "mxfp4_nm24_2x2"
    table["pe"]["format"] = "mxfp4"
    return parse_config(table, source="mxfp4 (examples/mxfp8_nm24_2x2.toml, format mxfp4)")


DESIGNS = {
    "int": lambda: load_config(REPO / "examples" / "nm24_int8_4x4.toml"),
    "rt48": lambda: load_config(REPO / "examples" / "rt48_int8_4x4.toml"),
    "fp8": lambda: load_config(REPO / "examples" / "fp8e4m3_nm24_4x4.toml"),
    "mxfp4": mxfp4_config,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--designs", default=",".join(DESIGNS))
    parser.add_argument("--scheduler", default=None)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    rows, ok = [], True
    for key in args.designs.split(","):
        config = DESIGNS[key]()
        started = time.monotonic()
        print(f"== {config.name}: {args.count} mutants, seed {args.seed}", flush=True)
        summary = run_mutate(config, REPO / "out" / "mutation" / config.name, args.count, args.seed,
                             args.scheduler, args.workers, log=lambda line: print(line, flush=True))
        print(format_table(summary), flush=True)
        summary["wall_s"] = round(time.monotonic() - started, 1)
        rows.append(summary)
        record(summary)  # each design as it finishes: a later design's campaign may take hours
        ok &= summary["score"] is not None and summary["score"] >= REQUIRED_SCORE and not summary["timed_out"]
    print("\n| design | mutants | killed | survived | timed out | equivalent | score |")
    print("|---|---|---|---|---|---|---|")
    for s in rows:
        score = "n/a" if s["score"] is None else f"{100 * s['score']:.1f} %"
        print(f"| {s['design']} | {s['mutants']} | {s['killed']} | {s['survived']} | {s['timed_out']} "
              f"| {s['equivalent']} | {score} |")
    print(f"wrote {RESULTS / 'mutation.json'}")
    return 0 if ok else 1


def record(summary):
    """Put one design's summary into benchmarks/results/mutation.json (other designs' rows kept)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "mutation.json"
    existing = json.loads(out.read_text()) if out.exists() else {}
    existing[summary["design"]] = summary
    out.write_text(json.dumps(existing, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
