"""Design-space sweeps (nmforge.fpga.sweep): real Yosys + nextpnr runs on a Dask LocalCluster.

Tiny arrays (1x1, 1x2) place and route in seconds; the whole file takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path

import pytest

from nmforge.fpga.sweep import (CSV_COLUMNS, SweepError, add_sweep_arguments, cmd_sweep, load_sweep,
                                pareto_front, run_sweep)

REPO = Path(__file__).resolve().parent.parent
SMALL = REPO / "examples" / "sweeps" / "small.toml"
ECP5 = REPO / "examples" / "sweeps" / "ecp5.toml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

BASE = """\
[base]
name = "{name}"
[base.array]
rows = 1
cols = 1
dataflow = "output_stationary"
[base.sparsity]
nm = "2:4"
[base.pe]
kind = "int"
act_width = 8
weight_width = 8
acc_width = 32
overflow = "wrap"
"""


def _args(sweep, output, scheduler=None, retry_failed=False):
    parser = add_sweep_arguments(argparse.ArgumentParser())
    argv = [str(sweep), "-o", str(output)]
    if scheduler:
        argv += ["--scheduler", scheduler]
    if retry_failed:
        argv.append("--retry-failed")
    return parser.parse_args(argv)


def _csv_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _result_files(out: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "points").glob("*/result.json")}


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep_small") / "out"
    lines: list[str] = []
    summary = run_sweep(SMALL, out, log=lines.append)
    return summary, out, lines


def test_small_sweep_runs_every_point(small_sweep):
    summary, out, lines = small_sweep
    assert (summary["points"], summary["computed"], summary["cached"]) == (4, 4, 0)
    assert (summary["ok"], summary["failed"], summary["invalid"]) == (4, 0, 0)
    assert summary["executor"].startswith("LocalCluster")
    # One progress line per computed point, with the counts, even though nothing is a terminal.
    progress = [ln for ln in lines if " done, " in ln and " running, " in ln]
    assert len(progress) == 4 and progress[-1].startswith("[sweep] 4/4 done, 0 running, 0 failed, 0 cached")

    rows = _csv_rows(out)
    assert len(rows) == 4
    assert list(rows[0]) == ["index", "array.rows", "array.cols", "sparsity.nm", *CSV_COLUMNS]
    seen = set()
    for row in rows:
        rows_, cols, nm = int(row["array.rows"]), int(row["array.cols"]), row["sparsity.nm"]
        n, m = (int(x) for x in nm.split(":"))
        seen.add((rows_, cols, nm))
        assert row["status"] == "ok" and row["error"] == "" and row["target"] == "ecp5"
        assert row["name"].startswith("sw_small_") and len(row["config_hash"]) == 64
        assert int(row["LUT4"]) > 0 and int(row["FF"]) > 0 and int(row["BRAM"]) == 0
        assert int(row["DSP"]) == rows_ * cols * n  # one MULT18X18D per INT8 multiplier
        assert int(row["dense_macs_per_cycle"]) == rows_ * cols * m
        fmax = float(row["fmax_mhz"])
        assert fmax > 50 and row["timing_met"] in ("True", "False")
        assert float(row["throughput_gmacs"]) == pytest.approx(rows_ * cols * m * fmax / 1000, rel=1e-3)
        result = json.loads((out / "points" / row["config_hash"] / "result.json").read_text())
        assert result["status"] == "ok" and result["name"] == row["name"]
        assert result["targets"]["ecp5"]["resources"]["LUT4_total"] == int(row["LUT4"])
        assert (out / "points" / row["config_hash"] / f"{row['name']}.v").is_file()
    assert seen == {(1, 1, "2:2"), (1, 1, "2:4"), (1, 2, "2:2"), (1, 2, "2:4")}
    assert len({r["name"] for r in rows}) == 4

    doc = json.loads((out / "results.json").read_text())
    assert len(doc["rows"]) == 4 and doc["summary"]["ok"] == 4
    assert {r["config_hash"] for r in doc["rows"]} == {r["config_hash"] for r in rows}
    png = (out / "pareto.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000


def test_rerun_computes_nothing_then_resumes_and_retries(small_sweep):
    _, out, _ = small_sweep
    before = _result_files(out)
    assert len(before) == 4

    again = run_sweep(SMALL, out, log=None)
    assert (again["computed"], again["cached"], again["ok"]) == (0, 4, 4)
    assert again["executor"].startswith("none")
    assert _result_files(out) == before  # not one result.json rewritten

    # An interrupted sweep lacks some results; a failed point keeps its failure until retried.
    hashes = sorted(before)
    (out / "points" / hashes[0] / "result.json").unlink()
    failed_path = out / "points" / hashes[1] / "result.json"
    ok_result = json.loads(failed_path.read_text())
    failed_path.write_text(json.dumps({"status": "failed", "error": "earlier failure",
                                       "config_hash": hashes[1], "run": ok_result["run"]}))
    # A result made with other nextpnr options is not a result for this flow.
    stale_path = out / "points" / hashes[2] / "result.json"
    stale = json.loads(stale_path.read_text())
    stale["run"]["flow"]["ecp5"]["pnr_args"].append("--some-other-option")
    stale_path.write_text(json.dumps(stale))
    resumed = run_sweep(SMALL, out, log=None)
    assert (resumed["computed"], resumed["cached"], resumed["failed"]) == (2, 2, 1)
    assert "--some-other-option" not in stale_path.read_text()
    row = next(r for r in _csv_rows(out) if r["config_hash"] == hashes[1])
    assert (row["status"], row["error"]) == ("failed", "earlier failure")
    assert json.loads(failed_path.read_text())["status"] == "failed"

    retried = run_sweep(SMALL, out, retry_failed=True, log=None)
    assert (retried["computed"], retried["cached"], retried["failed"], retried["ok"]) == (1, 3, 0, 4)
    assert json.loads(failed_path.read_text())["status"] == "ok"
    after = _result_files(out)
    assert {h for h in after if after[h] != before[h]} == {hashes[0], hashes[1], hashes[2]}


def test_invalid_point_fails_alone_on_an_existing_scheduler(tmp_path, capsys):
    """A grid value making an invalid design (nm 5:4) fails that point only; `--scheduler` runs the
    other points on an already running cluster."""
    from distributed import LocalCluster

    sweep = tmp_path / "bad_point.toml"
    sweep.write_text(BASE.format(name="sw_bad") + """
[grid]
"sparsity.nm" = ["2:2", "5:4", "2:4"]
[run]
targets = ["ecp5"]
""")
    out = tmp_path / "out"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        code = cmd_sweep(_args(sweep, out, scheduler=cluster.scheduler_address))
    assert code == 1  # some point failed; the others are there
    stdout = capsys.readouterr().out
    assert f"on scheduler {cluster.scheduler_address}" in stdout
    rows = {r["sparsity.nm"]: r for r in _csv_rows(out)}
    assert list(rows) == ["2:2", "5:4", "2:4"]
    bad = rows["5:4"]
    assert bad["status"] == "failed" and bad["config_hash"] == "" and bad["LUT4"] == ""
    assert "sparsity.nm: N=5 exceeds M=4" in bad["error"] and "\n" not in bad["error"]
    for nm in ("2:2", "2:4"):
        assert rows[nm]["status"] == "ok" and int(rows[nm]["LUT4"]) > 0 and float(rows[nm]["fmax_mhz"]) > 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["summary"]["failed"] == 1 and doc["summary"]["invalid"] == 1 and doc["summary"]["ok"] == 2
    assert len(list((out / "points").glob("*/result.json"))) == 2  # an invalid design costs nothing
    assert (out / "pareto.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("grid, field", [
    ('[grid]\n"array.bogus" = [1, 2]\n', "grid.array.bogus"),
    ('[grid]\n', "grid"),
    ('', "grid"),
    ('[grid]\n"array.rows" = []\n', "grid.array.rows"),
    ('[grid]\n"array.rows" = 2\n', "grid.array.rows"),
    ('[grid]\n"name" = ["a", "b"]\n', "grid.name"),
    ('[grid]\n"array.rows" = [1, 1]\n', "grid.array.rows"),
    ('[grid]\n"array.rows" = [1]\n[run]\ntargets = ["virtex"]\n', "run.targets"),
    ('[grid]\n"array.rows" = [1]\n[run]\nsimulate = true\n', "run.simulate"),
])
def test_bad_sweep_file_exits_2_with_one_line(tmp_path, capsys, grid, field):
    sweep = tmp_path / "bad.toml"
    sweep.write_text(BASE.format(name="sw") + "\n" + grid)
    out = tmp_path / "out"
    assert cmd_sweep(_args(sweep, out)) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and captured.out == ""
    assert err.startswith(f"nmforge: error: {sweep}: {field}: ")
    assert not out.exists()


def test_bad_sweep_file_itself(tmp_path, capsys):
    missing = tmp_path / "nope.toml"
    assert cmd_sweep(_args(missing, tmp_path / "out")) == 2
    assert f"{missing}: file: file not found" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("[grid\n")
    assert cmd_sweep(_args(broken, tmp_path / "out")) == 2
    assert "TOML syntax error" in capsys.readouterr().err
    unknown = tmp_path / "unknown.toml"
    unknown.write_text(BASE.format(name="sw") + '[grid]\n"array.rows" = [1]\n[base.pe2]\nx = 1\n')
    assert cmd_sweep(_args(unknown, tmp_path / "out")) == 2
    assert ": base.pe2: unknown key 'pe2'" in capsys.readouterr().err


def test_grid_expansion(tmp_path):
    sweep = load_sweep(ECP5)
    assert len(sweep.points) == 12 and all(p.config is not None for p in sweep.points)
    assert len({p.config.name for p in sweep.points}) == 12
    assert len({p.config_hash for p in sweep.points}) == 12
    assert all(p.config.name.startswith("sw_ecp5_") for p in sweep.points)
    assert {p.label for p in sweep.points} >= {"2:4 4x4", "1:4 2x2", "2:2 2x4"}

    # TOML dotted keys mean the same as quoted ones; `base` may name a design config file; names
    # and hashes do not depend on the sweep file.
    design = BASE.format(name="sw_ecp5").replace("[base]\n", "").replace("[base.", "[")
    (tmp_path / "design.toml").write_text(design)
    alt = tmp_path / "alt.toml"
    alt.write_text('base = "design.toml"\n[grid.array]\nrows = [2, 4]\ncols = [2, 4]\n'
                   '[grid.sparsity]\nnm = ["2:2", "2:4", "1:4"]\n[run]\nclock_mhz = 120\n')
    other = load_sweep(alt)
    assert {p.config_hash for p in other.points} == {p.config_hash for p in sweep.points}

    with pytest.raises(SweepError, match="same design"):
        dup = tmp_path / "dup.toml"
        dup.write_text(BASE.format(name="d") + '[grid]\n"synth.clock_mhz" = [100, 100.0]\n')
        load_sweep(dup)


def test_pareto_front():
    pts = [(100, 1.0), (200, 2.0), (150, 0.5), (200, 1.5), (300, 2.0), (50, 0.2), (100, 1.0)]
    assert pareto_front(pts) == [5, 0, 1]
    assert pareto_front([]) == []


def test_short_simulation_per_point_and_cache_by_run_settings(tmp_path):
    """`[run] sim = true` adds a short cocotb regression per point; a result with simulation also
    answers a sweep without it, not the other way round."""
    with_sim = tmp_path / "sim.toml"
    with_sim.write_text(BASE.format(name="sw_sim") + '[grid]\n"sparsity.nm" = ["2:4"]\n'
                        '[run]\nsim = true\nsim_gemms = 1\nworkers = 1\n')
    out = tmp_path / "out"
    summary = run_sweep(with_sim, out, log=None)
    assert (summary["computed"], summary["ok"]) == (1, 1)
    (row,) = _csv_rows(out)
    assert (row["sim"], row["status"]) == ("passed", "ok")
    result = json.loads((out / "points" / row["config_hash"] / "result.json").read_text())
    assert result["sim"]["passed"] is True and result["sim"]["tests"] >= 1

    without = tmp_path / "nosim.toml"
    without.write_text(with_sim.read_text().replace("sim = true", "sim = false"))
    assert run_sweep(without, out, log=None)["computed"] == 0
    other_seed = tmp_path / "seed.toml"
    other_seed.write_text(with_sim.read_text().replace("sim_gemms = 1", "sim_gemms = 1\npnr_seed = 2")
                          .replace("sim = true", "sim = false"))
    assert load_sweep(other_seed).points[0].config_hash == row["config_hash"]
    again = run_sweep(other_seed, out, log=None)  # another placement seed: a new result
    assert (again["computed"], again["ok"]) == (1, 1)
