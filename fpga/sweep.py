"""`nmforge sweep SWEEP.toml`: design-space sweeps (generate + synthesize [+ simulate]) on Dask.

Public API::

    run_sweep(sweep_path, out_dir, scheduler=None, retry_failed=False, log=print) -> summary dict
    cmd_sweep(args) -> int              # argparse namespace: sweep, output, scheduler, retry_failed
    add_sweep_arguments(parser)         # adds those arguments to an argparse (sub)parser
    load_sweep(path) -> Sweep, SweepError, pareto_front(points), plot_pareto(rows, path)

The sweep file format is described in `nmforge.fpga.sweep_spec`.

Execution: each valid grid point is one Dask task (generate, then synthesize/place/route for
every ``[run] targets``, then optionally a short cocotb regression). By default the tasks run on an
in-process ``distributed.LocalCluster`` (``[run] workers`` worker processes, default 2, one thread
each: the YoWASP tools are subprocesses); ``scheduler="tcp://HOST:PORT"`` (``--scheduler``) uses an
existing cluster instead. Its workers must import this version of nmforge and see ``out_dir``
at the same path (a shared file system) for the per-point files; ``result.json`` is written by the
client either way.

Cache: a point's result is ``OUT/points/<config_hash>/result.json``, written atomically when the
point ends. A re-run computes only points without a result (an interrupted sweep resumes); a
result made for other run settings (a target it lacks, no simulation when one is asked for,
another seed, other device-table tool options, YoWASP tool or generator versions) does not count
and is replaced. A failed point's result (``{"status": "failed", "error": ...}``) is
kept and not retried unless ``retry_failed``. A grid point that is not a valid design costs
nothing, writes no result and is listed as failed with its one-line ``ConfigError``.

Outputs (rewritten at the end of every run, and after an interruption):
``OUT/results.csv`` and ``OUT/results.json`` (one row per point and target: the grid values,
name, config hash, LUT4 (= ``LUT4_total``), FF, DSP, BRAM, Fmax, timing_met, dense-equivalent
MACs/cycle, throughput in GMAC/s = MACs/cycle x Fmax(MHz) / 1000, simulation, status, error) and
``OUT/pareto.png`` (throughput vs LUT4 and vs DSP, Pareto fronts highlighted and labelled).

Exit status of `cmd_sweep`: 0 every point ok, 1 some point failed (outputs still written) or the
scheduler is unreachable, 2 invalid sweep file (one line naming the field; nothing written),
130 interrupted (re-run to resume).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import os
import socket
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable

from .sweep_plot import pareto_front, plot_pareto
from .sweep_spec import Point, Sweep, SweepError, load_sweep

__all__ = ["run_sweep", "cmd_sweep", "add_sweep_arguments", "main", "load_sweep", "SweepError",
           "SweepRunError", "pareto_front", "plot_pareto", "CSV_COLUMNS"]

RESULT_FILE = "result.json"
#: Fixed CSV columns (the grid keys come first, after "index").
CSV_COLUMNS = ("name", "config_hash", "target", "LUT4", "FF", "DSP", "BRAM", "fmax_mhz", "timing_met",
               "dense_macs_per_cycle", "throughput_gmacs", "sim", "status", "error", "pattern", "label")


class SweepRunError(RuntimeError):
    """The sweep could not run (e.g. the scheduler is unreachable). One-line message."""


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _write_atomically(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --- one point (runs on a Dask worker) ------------------------------------------------------------

def _run_point(task: dict[str, Any]) -> dict[str, Any]:
    """Generate, synthesize for each target and optionally simulate one design; never raises for a
    failure of the design or the tools: the result says ``status: failed`` and why."""
    from ..gen.config import parse_config
    from ..gen.generate import generate

    t0 = time.monotonic()
    point_dir = Path(task["point_dir"])
    point_dir.mkdir(parents=True, exist_ok=True)
    config = parse_config(task["config"], source=f"point {task['config_hash'][:12]}")
    result: dict[str, Any] = {
        "status": "ok", "error": None, "config_hash": task["config_hash"], "name": config.name,
        "config": config.to_dict(), "run": task["run"],
        "dense_macs_per_cycle": config.dense_macs_per_cycle, "multipliers": config.multipliers,
        "targets": {}, "sim": None, "host": socket.gethostname(),
    }
    errors: list[str] = []
    with open(point_dir / "point.log", "w") as log_file, \
            contextlib.redirect_stdout(log_file), contextlib.redirect_stderr(log_file):
        def plog(line: str) -> None:
            print(line, flush=True)

        try:
            generated = generate(config, point_dir)
            result["latency_cycles"] = generated.info.get("latency_cycles")
            plog(f"[gen] {generated.verilog}")
        except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
            traceback.print_exc()
            generated = None
            errors.append(f"generate: {type(exc).__name__}: {_one_line(exc)}")
        if generated is not None:
            for target in task["run"]["targets"]:
                result["targets"][target] = _synth_target(config, generated, target, point_dir,
                                                          task["run"]["pnr_seed"], plog)
                if result["targets"][target].get("error"):
                    errors.append(f"{target}: {result['targets'][target]['error']}")
            if task["run"]["sim"]:
                result["sim"] = _simulate(generated, point_dir, task["run"], plog)
                if not result["sim"]["passed"]:
                    errors.append(result["sim"]["error"])
    if errors:
        result["status"] = "failed"
        result["error"] = _one_line("; ".join(errors))
    result["elapsed_s"] = round(time.monotonic() - t0, 2)
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return result


def _synth_target(config, generated, target, point_dir, pnr_seed, plog) -> dict[str, Any]:
    from .flow import synthesize
    try:
        report = synthesize(generated.verilog, generated.info["module"], target, point_dir / f"synth-{target}",
                            clock_mhz=config.clock_mhz, seed=pnr_seed, log=plog)
    except Exception as exc:  # noqa: BLE001 - FlowError and friends: recorded, the sweep goes on
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {_one_line(exc)}"}
    res = report["resources"]
    return {"error": None,
            "resources": {k: res.get(k) for k in ("LUT4_total", "LUT4", "CARRY", "FF", "DSP", "BRAM")},
            "fmax_mhz": report.get("fmax_mhz"), "timing_met": report.get("timing_met"),
            "clock_mhz": report.get("clock_mhz"), "critical_path": report.get("critical_path"),
            "report": str(point_dir / f"synth-{target}" / "report.json")}


def _simulate(generated, point_dir, run, plog) -> dict[str, Any]:
    from ..sim.regression import run_regression
    seed = run["sim_seed"]
    try:
        sim = run_regression(generated.verilog, generated.manifest, point_dir / "sim", seed,
                             options={"gemms": run["sim_gemms"], "stall": run["sim_stall"]}, log=plog)
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        return {"passed": False, "seed": seed, "tests": 0,
                "error": f"simulation: {type(exc).__name__}: {_one_line(exc)}"}
    out = {"passed": bool(sim.passed), "seed": seed, "tests": sim.tests, "log": str(sim.log),
           "error": None}
    if not sim.passed:
        out["error"] = f"simulation failed (seed {seed}; log {sim.log})"
    return out


# --- cache -----------------------------------------------------------------------------------------

def _flow_fingerprint(target: str) -> dict[str, Any]:
    """What of the flow decides a target's figures besides the design: the device-table commands
    and options, the YoWASP tool versions and the generator version."""
    from .. import __version__
    from .devices import device
    from .tools import package_version
    dev = device(target)
    return {"generator": __version__,
            **{k: dev.get(k) for k in ("device", "package", "synth", "synth_args", "nextpnr", "pnr_args",
                                       "ooc_args", "harness")},
            "yosys": package_version("yosys"), "nextpnr": package_version(dev["nextpnr"])}


def _run_settings(sweep: Sweep) -> dict[str, Any]:
    run = sweep.run
    out = {"targets": list(run["targets"]), "sim": run["sim"], "pnr_seed": run["pnr_seed"],
           "flow": {t: _flow_fingerprint(t) for t in run["targets"]}}
    if run["sim"]:
        out |= {"sim_gemms": run["sim_gemms"], "sim_stall": run["sim_stall"], "sim_seed": run["sim_seed"]}
    return json.loads(json.dumps(out))  # as it reads back from result.json (tuples are lists)


def _covers(have: dict[str, Any], want: dict[str, Any]) -> bool:
    """Whether a result made with run settings ``have`` answers a run with settings ``want``."""
    if not isinstance(have, dict) or have.get("pnr_seed") != want["pnr_seed"]:
        return False
    if not set(want["targets"]) <= set(have.get("targets") or ()):
        return False
    flow = have.get("flow") or {}
    if any(flow.get(t) != want["flow"][t] for t in want["targets"]):
        return False  # made with other tool options or versions
    if want["sim"]:
        return bool(have.get("sim")) and all(have.get(k) == want[k] for k in ("sim_gemms", "sim_stall", "sim_seed"))
    return True


def _load_result(path: Path, config_hash: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("config_hash") != config_hash or "status" not in data:
        return None
    return data


# --- rows and outputs ------------------------------------------------------------------------------

def _rows(sweep: Sweep, results: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    targets = sweep.run["targets"]
    for point in sweep.points:
        base = {"index": point.index, **{k: point.values[k] for k in sweep.grid}}
        cfg = point.config
        pattern = cfg.nm if cfg is not None else str(point.values.get("sparsity.nm", ""))
        common = {"name": cfg.name if cfg else "", "config_hash": point.config_hash,
                  "dense_macs_per_cycle": cfg.dense_macs_per_cycle if cfg else None,
                  "pattern": pattern, "label": point.label}
        result = results.get(point.index)
        for target in targets:
            row = base | common | {"target": target, "LUT4": None, "FF": None, "DSP": None, "BRAM": None,
                                   "fmax_mhz": None, "timing_met": None, "throughput_gmacs": None,
                                   "sim": None, "status": "failed", "error": None}
            if cfg is None:
                row["error"] = point.error
            elif result is None:
                row["status"], row["error"] = "not run", "no result (interrupted)"
            else:
                tres = (result.get("targets") or {}).get(target) or {}
                res = tres.get("resources") or {}
                row |= {"LUT4": res.get("LUT4_total"), "FF": res.get("FF"), "DSP": res.get("DSP"),
                        "BRAM": res.get("BRAM"), "fmax_mhz": tres.get("fmax_mhz"),
                        "timing_met": tres.get("timing_met")}
                if row["fmax_mhz"] is not None:
                    row["throughput_gmacs"] = round(cfg.dense_macs_per_cycle * row["fmax_mhz"] / 1000.0, 4)
                sim = result.get("sim")
                if sim is not None:
                    row["sim"] = "passed" if sim.get("passed") else "failed"
                if result.get("status") == "ok":
                    row["status"] = "ok"
                else:
                    row["error"] = tres.get("error") or (sim or {}).get("error") or result.get("error")
                    if not row["error"]:
                        row["error"] = result.get("error") or "failed"
            rows.append(row)
    return rows


def _write_outputs(sweep: Sweep, out: Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    columns = ["index", *sweep.grid, *CSV_COLUMNS]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    _write_atomically(out / "results.csv", buf.getvalue())
    doc = {"sweep": str(sweep.path), "base": sweep.base, "grid": sweep.grid, "run": sweep.run,
           "summary": summary, "columns": columns, "rows": [{k: r.get(k) for k in columns} for r in rows]}
    _write_atomically(out / "results.json", json.dumps(doc, indent=2, default=str) + "\n")
    title = f"{sweep.name} ({sweep.path.name})"
    plot_pareto(rows, out / "pareto.png", title=title)


# --- progress --------------------------------------------------------------------------------------

class _Progress:
    """Counts and prints progress: a tqdm bar on an interactive terminal (stderr), and one line per
    completed point through ``log`` always (so CI logs, where nothing is a terminal, get lines)."""

    def __init__(self, total: int, cached: int, failed: int, slots: int, log: Callable[[str], Any]):
        self.total, self.cached, self.failed, self.slots, self.log = total, cached, failed, slots, log
        self.computed = 0
        self.pending = 0
        self.bar = None

    def start(self, pending: int) -> None:
        self.pending = pending
        if self.total and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=self.total, initial=self.total - pending, desc="sweep", unit="pt",
                            dynamic_ncols=True, leave=True, file=sys.stderr)
            self._postfix()

    @property
    def running(self) -> int:
        return min(self.pending, self.slots)

    def _counts(self) -> str:
        done = self.total - self.pending
        return (f"{done}/{self.total} done, {self.running} running, {self.failed} failed, "
                f"{self.cached} cached")

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"running {self.running}, failed {self.failed}, cached {self.cached}",
                                 refresh=True)

    def point_done(self, line: str, failed: bool) -> None:
        self.pending -= 1
        self.computed += 1
        self.failed += int(failed)
        msg = f"[sweep] {self._counts()} | {line}"
        if self.bar is not None:
            self.bar.clear()
            self.log(msg)
            self.bar.update(1)
            self._postfix()
        else:
            self.log(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _point_line(point: Point, result: dict[str, Any]) -> str:
    parts = [f"{point.config.name} [{point.label}]"]
    if result.get("status") != "ok":
        parts.append(f"FAILED: {result.get('error')}")
    for target, t in (result.get("targets") or {}).items():
        if t.get("error"):
            continue
        res = t.get("resources") or {}
        fmax = t.get("fmax_mhz")
        thr = f"{point.config.dense_macs_per_cycle * fmax / 1000:.2f} GMAC/s" if fmax else "no Fmax"
        parts.append(f"{target}: LUT4 {res.get('LUT4_total')}, DSP {res.get('DSP')}, "
                     f"Fmax {fmax if fmax is None else f'{fmax:.1f}'} MHz, {thr}")
    if result.get("sim") is not None:
        parts.append("sim " + ("passed" if result["sim"].get("passed") else "FAILED"))
    parts.append(f"({result.get('elapsed_s', 0):.1f} s)")
    return " ".join(parts[:1]) + ": " + "; ".join(parts[1:-1]) + " " + parts[-1]


# --- Dask ------------------------------------------------------------------------------------------

def _ignore(_signum, _frame) -> None:
    pass


def _quiet_sigint() -> None:
    """On a LocalCluster worker: SIGINT does nothing in the worker itself (a Python handler, not
    SIG_IGN, so the tool subprocesses it starts still stop on Ctrl-C)."""
    import signal
    signal.signal(signal.SIGINT, _ignore)


@contextlib.contextmanager
def _dask_client(scheduler: str | None, workers: int):
    from distributed import Client, LocalCluster
    if scheduler:
        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise SweepRunError(f"cannot connect to Dask scheduler {scheduler}: {_one_line(exc)}") from None
        try:
            yield client, f"scheduler {scheduler}"
        finally:
            client.close()
        return
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    try:
        client = Client(cluster)
        try:
            # Ctrl-C reaches the whole process group: let it stop the tools the workers run, and
            # this process, but not print a traceback per worker (they are closed below).
            client.run(_quiet_sigint)
            yield client, f"LocalCluster ({workers} worker process{'es' if workers != 1 else ''})"
        finally:
            client.close()
    finally:
        cluster.close()


# --- the sweep -------------------------------------------------------------------------------------

def default_out_dir(sweep_path: str | os.PathLike) -> Path:
    return Path("out") / Path(sweep_path).stem


def run_sweep(sweep_path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
              scheduler: str | None = None, retry_failed: bool = False,
              log: Callable[[str], Any] | None = print) -> dict[str, Any]:
    """Run (or resume) the sweep in ``sweep_path`` into ``out_dir``; return the summary dict:
    ``points`` (grid points), ``computed`` (run now), ``cached`` (results reused), ``ok``,
    ``failed`` (of all points, ``invalid`` included), ``invalid`` (not valid designs), ``rows``,
    ``elapsed_s``, ``executor`` and ``files`` (``results_csv``, ``results_json``, ``pareto_png``).
    Raises `SweepError` for an invalid sweep file (before writing anything) and `SweepRunError`
    when the scheduler cannot be reached."""
    say = log or (lambda _line: None)
    t0 = time.monotonic()
    sweep = load_sweep(sweep_path)
    out = Path(out_dir if out_dir is not None else default_out_dir(sweep_path)).resolve()
    points_dir = out / "points"
    want = _run_settings(sweep)

    results: dict[int, dict[str, Any]] = {}
    todo: list[Point] = []
    cached = invalid = retried = 0
    for point in sweep.points:
        if point.config is None:
            invalid += 1
            continue
        existing = _load_result(points_dir / point.config_hash / RESULT_FILE, point.config_hash)
        if existing is not None and _covers(existing.get("run"), want):
            if existing["status"] == "ok" or not retry_failed:
                results[point.index] = existing
                cached += 1
                continue
            retried += 1
        todo.append(point)
    failed_cached = sum(1 for r in results.values() if r.get("status") != "ok")

    out.mkdir(parents=True, exist_ok=True)
    n = len(sweep.points)
    say(f"[sweep] {sweep.path}: {n} point(s) ({' x '.join(f'{k} {len(v)}' for k, v in sweep.grid.items())}) "
        f"for {', '.join(want['targets'])}{' + sim' if want['sim'] else ''}: {len(todo)} to compute"
        f"{f' ({retried} failed retried)' if retried else ''}, {cached} cached"
        f"{f' ({failed_cached} failed)' if failed_cached else ''}, {invalid} invalid -> {out}")
    for point in sweep.points:
        if point.config is None:
            say(f"[sweep] point {point.index} [{point.label}] invalid: {point.error}")

    executor = "none (all cached)"
    computed = 0
    interrupted = False
    if todo:
        try:
            with _dask_client(scheduler, sweep.run["workers"]) as (client, executor):
                slots = sum(client.nthreads().values()) or 1
                say(f"[sweep] running {len(todo)} point(s) on {executor}, {slots} slot(s)")
                progress = _Progress(n, cached, failed_cached + invalid, slots, say)
                progress.start(len(todo))
                try:
                    _compute(client, sweep, todo, points_dir, want, results, progress)
                finally:
                    progress.close()
        except KeyboardInterrupt:
            interrupted = True
        computed = sum(1 for p in todo if p.index in results)

    rows = _rows(sweep, results)
    failed = invalid + sum(1 for r in results.values() if r.get("status") != "ok")
    summary = {
        "sweep": str(sweep.path), "out_dir": str(out), "points": n, "computed": computed,
        "cached": cached, "ok": sum(1 for r in results.values() if r.get("status") == "ok"),
        "failed": failed, "invalid": invalid, "retried": retried,
        "not_run": n - invalid - len(results), "rows": len(rows), "targets": want["targets"],
        "executor": executor, "interrupted": interrupted,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "files": {"results_csv": str(out / "results.csv"), "results_json": str(out / "results.json"),
                  "pareto_png": str(out / "pareto.png"), "points": str(points_dir)},
    }
    _write_outputs(sweep, out, rows, summary)
    if interrupted:
        say(f"[sweep] interrupted after {computed} computed point(s); re-run to resume")
        raise KeyboardInterrupt
    say(f"[sweep] done in {summary['elapsed_s']} s: {summary['ok']} ok, {failed} failed "
        f"({invalid} invalid), {computed} computed, {cached} cached; {out / 'results.csv'}, "
        f"{out / 'pareto.png'}")
    return summary


def _cost(config) -> int:
    """Rough relative cost of synthesizing a design: PEs x (multipliers + decoder inputs)."""
    return config.rows * config.cols * (config.n + config.m)


def _compute(client, sweep: Sweep, todo: list[Point], points_dir: Path, want: dict[str, Any],
             results: dict[int, dict[str, Any]], progress: _Progress) -> int:
    from distributed import as_completed

    futures = {}
    # Biggest designs first (and at the highest priority), so the longest runs do not start last.
    for point in sorted(todo, key=lambda p: -_cost(p.config)):
        cfg = point.config
        task = {"config": cfg.to_dict(), "config_hash": point.config_hash,
                "point_dir": str(points_dir / point.config_hash), "run": want}
        fut = client.submit(_run_point, task, key=f"nmforge-point-{cfg.name}-{uuid.uuid4().hex[:8]}",
                            pure=False, priority=_cost(cfg))
        futures[fut] = point
    computed = 0
    try:
        for fut in as_completed(list(futures)):
            point = futures[fut]
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died, a task errored: record it
                result = {"status": "failed", "error": f"{type(exc).__name__}: {_one_line(exc)}",
                          "config_hash": point.config_hash, "name": point.config.name,
                          "config": point.config.to_dict(), "run": want, "targets": {}, "sim": None,
                          "elapsed_s": 0.0}
            _write_atomically(points_dir / point.config_hash / RESULT_FILE,
                              json.dumps(result, indent=2, default=str) + "\n")
            results[point.index] = result
            computed += 1
            progress.point_done(_point_line(point, result), result.get("status") != "ok")
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    return computed


# --- command line ----------------------------------------------------------------------------------

def add_sweep_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `nmforge sweep` arguments (``sweep``, ``-o/--output``, ``--scheduler``,
    ``--retry-failed``) to ``parser``; dispatch to `cmd_sweep`."""
    parser.add_argument("sweep", metavar="SWEEP", help="sweep file (TOML): [base], [grid], [run]")
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="output directory (default: out/<sweep file name without .toml>)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="address of an existing Dask scheduler (default: an in-process LocalCluster)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="recompute points whose cached result is a failure")
    return parser


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run `run_sweep` for parsed arguments; 0 all ok, 1 a point failed / no scheduler, 2 bad sweep
    file, 130 interrupted."""
    out = args.output or default_out_dir(args.sweep)
    try:
        summary = run_sweep(args.sweep, out, scheduler=getattr(args, "scheduler", None),
                            retry_failed=bool(getattr(args, "retry_failed", False)), log=_print)
    except SweepError as exc:
        print(f"nmforge: error: {exc}", file=sys.stderr)
        return 2
    except SweepRunError as exc:
        print(f"nmforge: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nmforge: sweep interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    return 0 if summary["failed"] == 0 else 1


def _print(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nmforge sweep",
                                     description="Design-space sweep: generate + synthesize (+ simulate) "
                                                 "every point of a grid on Dask, with a cache per config hash.")
    add_sweep_arguments(parser)
    return cmd_sweep(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
