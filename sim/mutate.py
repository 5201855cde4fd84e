"""`nmforge mutate CONFIG`: mutation testing, i.e. how many injected faults the default regression
(what `nmforge sim CONFIG` runs: tb_array, default GEMM count and stall probability) catches.

Steps (each mutant's outcome is cached, so an interrupted campaign resumes):
 1. generate the design (OUT/design: Verilog + manifest, as `nmforge generate`) and elaborate it
    once more with source locations (OUT/design/src.v: Amaranth's `src` attributes name the
    Python line of every cell);
 2. Yosys prepares one flat netlist (PREP: proc, memory, flatten) and lists a pool of candidate
    mutations with `mutate -list` (evenly sampled over source locations, seeded); each candidate
    is classified by the submodule kind it hits (`KINDS`, `classify`) and COUNT are drawn round
    robin over the kinds, so every kind the design has gets its share;
 3. Yosys applies all COUNT mutants to one netlist, each behind its value of a new top-level input
    `mutsel` (`mutate -ctrl mutsel W i`; 0 = the original design): OUT/mutants.v, which Verilator
    builds ONCE (sim.harness.start drives `mutsel` from NMFORGE_MUTANT);
 4. the unmutated design (mutsel 0) must pass; then every mutant is one regression run on Dask (an
    in-process LocalCluster, or an existing scheduler: fpga.sweep's client), in its own process
    with a wall-clock limit: killed (the regression fails), survived, or timed out (still running
    after TIMEOUT_FACTOR x the original's run time + TIMEOUT_MARGIN_S: killed and counted);
 5. every survivor goes to Yosys' equivalence checker, on the outputs in the mutated cell's
    fan-out: `equiv_make` / `equiv_simple` / `equiv_induct` of the original against that one
    mutant (an unbounded proof; internal pairs that differ are left out and the proof redone,
    see prove_equivalent), else a bounded miter (`miter -equiv`, `sat -seq K`, K = latency +
    BOUNDED_EXTRA cycles from an all-zero state with free inputs); proven unobservable ->
    "equivalent", not a gap.
Score = killed / (mutants - equivalent) (timed out counts as not killed). Outputs: a table on
stdout, OUT/mutation.json (every mutant: kind, mode, cell, Python source location, outcome).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

from ..fpga.tools import FlowError, run_tool

KINDS = ("decoder", "mac", "accumulator", "handshake", "output queue", "flags", "pipeline")
OUTCOMES = ("killed", "survived", "timed out", "equivalent")
POOL_FACTOR = 25          # candidates listed per mutant drawn
TIMEOUT_FACTOR = 5        # a mutant's run may take this many times the original's ...
TIMEOUT_MARGIN_S = 60     # ... plus this
BOUNDED_EXTRA = 8         # bounded miter depth: latency + this many cycles
EQUIV_ROUNDS = 3          # equiv_induct attempts, each without the previous one's unproven pairs
PREP = ["proc", "memory", "flatten", "opt_clean"]  # memory before flatten: its cells keep their place
SRC_FILE = "src.v"        # cell names Yosys derives from the Verilog carry this file name
DEFAULT_GEMMS, DEFAULT_STALL = 4, 0.3   # `nmforge sim`'s defaults (cli._sim_options)
EXIT_BAD_INPUT = 2


class MutateError(RuntimeError):
    """The campaign cannot run (the original design fails its regression, a tool fails). One line."""


# --- classification --------------------------------------------------------------------------------

_ARRAY_WORDS = [("flags", ("overflow", "meta_error", "bad_groups", "bad.", "bad ", "counts")),
                ("output queue", ("queue", "held", "capture", "take.eq", "r_rdy", "r_data")),
                ("pipeline", ("delay(", "skew")),
                ("handshake", ("outstanding", "ready", "may_take", "beat", "admit", "taken"))]


def _python_sources(line: str) -> list[tuple[str, int]]:
    return [(path, int(number)) for path, number in re.findall(r"-src (\S+\.py):(\d+)", line)]


def classify(line: str) -> str:
    """The submodule kind a `mutate -list` line hits: by the Python file of its source location
    (rtl/decoder.py -> decoder, ...; in rtl/mac_array.py by the words of that line), else by the
    cell's place in the hierarchy."""
    for path, number in _python_sources(line):
        name = pathlib.Path(path).name
        if name == "decoder.py":
            return "decoder"
        if name == "accumulator.py":
            return "accumulator"
        if name in ("fifo.py", "memory.py"):
            return "output queue"
        if name.startswith("mac_") and name != "mac_array.py" or name in ("fp32.py", "formats.py"):
            return "mac"
        if name in ("pe.py", "pipeline.py"):
            return "pipeline"
        if name == "mac_array.py":
            text = _source_line(path, number)
            for kind, words in _ARRAY_WORDS:
                if any(word in text for word in words):
                    return kind
    cell = re.search(r"-cell (\S+)", line).group(1)
    wire = (re.search(r"-wire (\S+)", line) or re.search(r"()", "")).group(1)
    for marker, kind in ((".decoder.", "decoder"), ("result_queue_", "output queue"),
                         (".mac.", "mac"), ("pe_", "pipeline")):
        if marker in cell or marker in wire:
            return kind
    if any(word in cell + wire for word in ("overflow", "meta_error", "bad")):
        return "flags"
    return "handshake"


def _source_line(path: str, number: int) -> str:
    try:
        return pathlib.Path(path).read_text().splitlines()[number - 1]
    except (OSError, IndexError):
        return ""


def location(line: str) -> str:
    """A mutant's source location: its Python lines (repository-relative; a library's relative
    to its site-packages, e.g. amaranth/lib/fifo.py), else the netlist's."""
    root = pathlib.Path(__file__).resolve().parent.parent
    places = []
    for path, number in _python_sources(line):
        p = pathlib.Path(path)
        if "site-packages" in p.parts:
            shown = pathlib.Path(*p.parts[p.parts.index("site-packages") + 1:])
        elif p.is_relative_to(root):
            shown = p.relative_to(root)
        else:
            shown = pathlib.Path(*p.parts[-3:])
        places.append(f"{shown}:{number}")
    if not places:
        places = re.findall(r"-src (\S+)", line)[:1]
    if not places:  # a cell Yosys made (e.g. a mapped memory): its instance path
        cell = re.search(r"-cell (\S+)", line).group(1)
        places = [cell.removeprefix("$flatten\\").replace("\\", "").split(".$")[0]]
    return ", ".join(dict.fromkeys(places))


def draw(pool: list[str], count: int, seed: int) -> list[dict]:
    """`count` mutants from the candidate `pool`, round robin over the kinds present (in KINDS
    order), each kind's candidates in a seeded random order; distinct cells/bits only."""
    rng = random.Random(seed)
    by_kind: dict[str, list[str]] = {}
    for line in dict.fromkeys(pool):
        by_kind.setdefault(classify(line), []).append(line)
    for lines in by_kind.values():
        rng.shuffle(lines)
    chosen = []
    while len(chosen) < count and any(by_kind.values()):
        for kind in KINDS:
            if by_kind.get(kind) and len(chosen) < count:
                chosen.append({"kind": kind, "line": by_kind[kind].pop()})
    for number, mutant in enumerate(chosen, 1):
        line = mutant["line"]
        mutant.update(id=number, mode=re.search(r"-mode (\S+)", line).group(1),
                      cell=re.search(r"-cell (\S+)", line).group(1), location=location(line))
    return chosen


# --- Yosys -----------------------------------------------------------------------------------------

def _yosys(work: pathlib.Path, name: str, commands: list[str], timeout=None):
    """Run a Yosys script `name`.ys of `commands` in `work` (relative paths, see fpga.tools)."""
    (work / f"{name}.ys").write_text("\n".join(commands) + "\n")
    return run_tool("yosys", ["-q", "-l", f"{name}.log", "-s", f"{name}.ys"], cwd=work,
                    log_file=work / f"{name}.log", timeout=timeout)


def _prep(module: str) -> list[str]:
    return [f"read_verilog {SRC_FILE}", f"hierarchy -top {module}", *PREP]


def list_pool(work: pathlib.Path, module: str, size: int, seed: int) -> list[str]:
    _yosys(work, "pool", [*_prep(module), f"mutate -list {size} -seed {seed} -o pool.txt"])
    return [line for line in (work / "pool.txt").read_text().splitlines() if line.startswith("mutate ")]


def write_mutants(work: pathlib.Path, module: str, mutants: list[dict]) -> pathlib.Path:
    """One netlist with every mutant behind its `mutsel` value: OUT/mutants.v."""
    width = max(1, len(mutants).bit_length())
    apply = [f"{m['line']} -ctrl mutsel {width} {m['id']}" for m in mutants]
    _yosys(work, "mutants", [*_prep(module), *apply, "opt_clean", "write_verilog -noattr mutants.v"])
    return work / "mutants.v"


def _outputs(work: pathlib.Path, module: str) -> set[str]:
    """The output port names of `module` in OUT/src.v."""
    text = (work / SRC_FILE).read_text()
    body = text[text.index(f"module {module}("):]
    body = body[:body.index("endmodule")]
    return set(re.findall(r"^\s*output\s+(?:\[[^\]]*\]\s*)?\\?(\S+)\s*;", body, re.M))


def _unproven(log: pathlib.Path) -> set[str]:
    """Wires of the unproven $equiv cells that `equiv_status` listed in `log`."""
    return set(re.findall(r"Unproven \$equiv \S+ \\?(\S+?)_gold", log.read_text()))


def prove_equivalent(work: pathlib.Path, module: str, mutant: dict, depth: int) -> str | None:
    """How the mutant was proven unobservable at the ports, or None when no proof holds.

    First the outputs are split into bits and the bits outside the mutated cell's transitive
    fan-out lose their port flag (they are the same function in both copies): what is left to
    compare is the mutant's cone (e.g. one PE's result, not the whole array's).
    "equiv_induct": equiv_make pairs the two copies' same-named signals, equiv_simple and
    equiv_induct prove the pairs for every input sequence from equal states, assuming the
    other pairs; a pair left unproven inside the design (the mutated net itself, say a bit that
    no reader uses) is taken out of the pairing (equiv_make -blacklist) and the proof redone
    without it, up to EQUIV_ROUNDS times, so that no proof leans on a pair that does not hold;
    an unproven output fails. Else f"bounded {depth} cycles": a miter of the cone's outputs
    from the all-zero state (`sat -seq`)."""
    line = re.sub(r"-module \S+", "-module gate", mutant["line"])
    cell = re.search(r"-cell (\S+)", mutant["line"]).group(1)
    cone = [f"splitnets -ports {module}/o:*", f"select -assert-count 1 {module}/{cell}",
            f"select -set cone {module}/{cell} %co*",
            f"delete -port {module}/o:* @cone %d",
            "opt_clean"]
    pair = [*_prep(module), *cone, f"copy {module} gate", f"rename {module} gold", line]
    outputs, blacklist = _outputs(work, module), set()
    name = f"equiv_{mutant['id']}"
    for _ in range(EQUIV_ROUNDS):
        (work / f"{name}.blacklist").write_text("".join(f"{w}\n" for w in sorted(blacklist)))
        try:
            _yosys(work, name, [*pair, f"equiv_make -blacklist {name}.blacklist gold gate equiv",
                                "hierarchy -top equiv", "equiv_simple -seq 4", "equiv_induct -seq 4",
                                "equiv_status -assert"], timeout=600)
            return "equiv_induct"
        except FlowError:
            unproven = _unproven(work / f"{name}.log")
            ports = {re.sub(r"\[\d+\]$", "", w) for w in unproven}
            if not unproven or ports & outputs or unproven <= blacklist:
                break
            blacklist |= unproven
    try:
        _yosys(work, f"miter_{mutant['id']}",
               [*pair, "miter -equiv -flatten -make_outputs -ignore_gold_x gold gate miter",
                "hierarchy -top miter", "opt -fast",
                f"sat -verify -prove trigger 0 -set-init-zero -seq {depth} -timeout 60 miter"],
               timeout=240)
        return f"bounded {depth} cycles"
    except FlowError:
        return None


# --- one mutant (runs on a Dask worker) -------------------------------------------------------------

def _run_mutant(task: dict) -> dict:
    """Simulate one mutant in a child process with a wall-clock limit; prove survivors."""
    work = pathlib.Path(task["work"])
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "nmforge.sim.mutate", "--one", json.dumps(task)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=task["timeout_s"])
        passed = proc.returncode == 0
        outcome = "survived" if passed else "killed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        outcome = "timed out"
    result = {"id": task["mutant"]["id"], "outcome": outcome, "sim_s": round(time.monotonic() - t0, 1),
              "failure": _first_failure(work)}
    (work / "child.log").write_text(output or "")
    if outcome == "survived":
        shutil.copyfile(task["src"], work / SRC_FILE)
        proof = prove_equivalent(work, task["module"], task["mutant"], task["depth"])
        if proof:
            result["outcome"], result["proof"] = "equivalent", proof
    return result


def _first_failure(work: pathlib.Path) -> str:
    """The first assertion message of the regression's log (why a mutant was killed)."""
    log = work / "run" / "sim.log"
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    match = re.search(r"(AssertionError|Error)[:]?\s*(.*)", text)
    return " ".join(match.group(0).split())[:200] if match else ""


def _one(task: dict) -> int:
    """Child process: the regression on mutant `task['mutant']['id']`; exit 0 when it passes."""
    from .regression import run_regression
    result = run_regression(pathlib.Path(task["verilog"]), pathlib.Path(task["manifest"]),
                            pathlib.Path(task["work"]), task["seed"],
                            options={**task["options"], "mutant": task["mutant"]["id"]},
                            log=lambda line: None, waves_on_failure=False)
    return 0 if result.passed else 1


# --- the campaign ----------------------------------------------------------------------------------

def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def run_mutate(config, out_dir: pathlib.Path, count: int, seed: int, scheduler: str | None = None,
               workers: int = 2, log=print) -> dict:
    """Run (or resume) a campaign of `count` mutants; returns the summary (also OUT/mutation.json)."""
    from ..fpga.sweep import _dask_client
    from ..gen.elaborate import build, to_verilog
    from ..gen.generate import generate
    from .regression import run_regression

    t0 = time.monotonic()
    out_dir = pathlib.Path(out_dir).resolve()
    design = out_dir / "design"
    generated = generate(config, design)
    module, latency = generated.info["module"], generated.info["latency_cycles"]
    src = to_verilog(build(config, "array"), module, emit_src=True)
    (design / SRC_FILE).write_text(src)
    log(f"[mutate] {module}: listing mutations (Yosys mutate -list, seed {seed})")
    pool = list_pool(design, module, max(count * POOL_FACTOR, 200), seed)
    mutants = draw(pool, count, seed)
    kinds = {kind: sum(m["kind"] == kind for m in mutants) for kind in KINDS}
    log(f"[mutate] {len(mutants)} mutants from {len(pool)} candidates: "
        + ", ".join(f"{k} {n}" for k, n in kinds.items() if n))
    verilog = write_mutants(design, module, mutants)
    options = {"gemms": DEFAULT_GEMMS, "stall": DEFAULT_STALL}
    campaign = _digest(verilog.read_text(), options, seed)

    build_dir = out_dir / "build"
    log("[mutate] the original design (mutsel 0), building the mutant netlist once with Verilator")
    started = time.monotonic()
    original = run_regression(verilog, generated.manifest, build_dir, seed,
                              options={**options, "mutant": 0}, log=log, waves_on_failure=False)
    if not original.passed:
        raise MutateError(f"the unmutated design fails its regression (seed {seed}; log {original.log})")
    base_s = time.monotonic() - started
    timeout_s = TIMEOUT_FACTOR * base_s + TIMEOUT_MARGIN_S

    results, todo = {}, []
    for mutant in mutants:
        cached = _load(out_dir / "mutants" / f"{mutant['id']}-{campaign}" / "result.json")
        if cached is not None:
            results[mutant["id"]] = cached
        else:
            todo.append(mutant)
    log(f"[mutate] original passes ({base_s:.0f} s incl. build); {len(todo)} mutants to run, "
        f"{len(results)} cached; limit {timeout_s:.0f} s per mutant")
    executor = "none (all cached)"
    if todo:
        with _dask_client(scheduler, workers) as (client, executor):
            log(f"[mutate] running on {executor}")
            _compute(client, todo, results, out_dir, campaign, {
                "verilog": str(verilog), "manifest": str(generated.manifest), "module": module,
                "src": str(design / SRC_FILE),
                "seed": seed, "options": options, "timeout_s": timeout_s,
                "depth": latency + BOUNDED_EXTRA}, log, len(mutants))
    rows = [m | results[m["id"]] for m in mutants]
    summary = _summary(config, rows, count, seed, executor, time.monotonic() - t0)
    (out_dir / "mutation.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _load(path: pathlib.Path):
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return result if result.get("outcome") in OUTCOMES else None


def _compute(client, todo, results, out_dir, campaign, common, log, total):
    from distributed import as_completed

    from ..fpga.sweep import _write_atomically
    bar = _bar(total, total - len(todo))
    futures = {}
    for mutant in todo:
        work = out_dir / "mutants" / f"{mutant['id']}-{campaign}"
        task = common | {"mutant": mutant, "work": str(work)}
        futures[client.submit(_run_mutant, task, key=f"nmforge-mutant-{mutant['id']}-{uuid.uuid4().hex[:8]}",
                              pure=False)] = (mutant, work)
    try:
        for future in as_completed(list(futures)):
            mutant, work = futures[future]
            result = future.result()
            _write_atomically(work / "result.json", json.dumps(result, indent=2) + "\n")
            results[mutant["id"]] = result
            counts = {o: sum(r["outcome"] == o for r in results.values()) for o in OUTCOMES}
            line = (f"[mutate] {len(results)}/{total} | mutant {mutant['id']} ({mutant['kind']}, "
                    f"{mutant['mode']}, {mutant['location']}): {result['outcome']}"
                    f"{' (' + result['proof'] + ')' if result.get('proof') else ''} | "
                    + ", ".join(f"{n} {o}" for o, n in counts.items()))
            if bar is not None:
                bar.clear()
            log(line)
            if bar is not None:
                bar.update(1)
    finally:
        for future in futures:
            future.cancel()
        if bar is not None:
            bar.close()


def _bar(total, done):
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=done, desc="mutate", unit="mutant", file=sys.stderr)


def _summary(config, rows, count, seed, executor, elapsed) -> dict:
    counts = {o: sum(r["outcome"] == o for r in rows) for o in OUTCOMES}
    observable = len(rows) - counts["equivalent"]
    by_kind = {}
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        if mine:
            by_kind[kind] = {o: sum(r["outcome"] == o for r in mine) for o in OUTCOMES}
    return {"design": config.name, "count": count, "seed": seed, "mutants": len(rows),
            **{o.replace(" ", "_"): n for o, n in counts.items()},
            "score": round(counts["killed"] / observable, 4) if observable else None,
            "by_kind": by_kind, "executor": executor, "elapsed_s": round(elapsed, 1),
            "regression": {"gemms": DEFAULT_GEMMS, "stall": DEFAULT_STALL, "seed": seed},
            "survivors": [{k: r[k] for k in ("id", "kind", "mode", "cell", "location")}
                          for r in rows if r["outcome"] in ("survived", "timed out")],
            "mutants_detail": [{k: r.get(k) for k in ("id", "kind", "mode", "cell", "location",
                                                      "outcome", "proof", "failure", "sim_s")}
                               for r in rows]}


def format_table(summary: dict) -> str:
    lines = [f"{'kind':<13} {'mutants':>7} {'killed':>7} {'survived':>8} {'timed out':>9} {'equivalent':>10}"]
    for kind, c in summary["by_kind"].items():
        lines.append(f"{kind:<13} {sum(c.values()):>7} {c['killed']:>7} {c['survived']:>8} "
                     f"{c['timed out']:>9} {c['equivalent']:>10}")
    lines.append(f"{'all':<13} {summary['mutants']:>7} {summary['killed']:>7} {summary['survived']:>8} "
                 f"{summary['timed_out']:>9} {summary['equivalent']:>10}")
    score = summary["score"]
    lines.append(f"score: {'n/a' if score is None else f'{100 * score:.1f} %'} of the mutants not proven "
                 "equivalent are killed by the default regression")
    for s in summary["survivors"]:
        lines.append(f"  survivor {s['id']} ({s['kind']}, {s['mode']}): {s['location']} [{s['cell']}]")
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------------------

def add_mutate_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--count", type=int, default=40, help="mutants to draw (default 40)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the mutant draw and of the regression (default 1)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="address of an existing Dask scheduler (default: an in-process LocalCluster)")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default 2)")


def cmd_mutate(config, out_dir, args) -> int:
    """`nmforge mutate`: 0 when the campaign ran (whatever the score), 1 when it could not, 2 bad
    arguments."""
    from ..fpga.sweep import SweepRunError
    for name, value, low in (("--count", args.count, 1), ("--workers", args.workers, 1)):
        if value < low:
            print(f"nmforge: error: {name}: {value}; allowed: an integer >= {low}", file=sys.stderr)
            return EXIT_BAD_INPUT
    try:
        summary = run_mutate(config, out_dir, args.count, args.seed, args.scheduler, args.workers,
                             log=lambda line: print(line, flush=True))
    except (MutateError, FlowError, SweepRunError) as error:
        print(f"nmforge: mutate failed: {error}", file=sys.stderr)
        return 1
    print(format_table(summary), flush=True)
    print(f"[mutate] {out_dir / 'mutation.json'}", flush=True)
    return 0


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--one":
    sys.exit(_one(json.loads(sys.argv[2])))
