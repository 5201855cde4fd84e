"""The shared Verilator build cache: one build per Verilog text for every process and work
directory, progress lines while it builds, nothing of it in the user's output directory."""
import json
import multiprocessing
import re

import pytest

from nmforge.cli import main
from nmforge.gen.generate import generate
from nmforge.sim import runner

from conftest import make_config

TOML = """name = "cache1x1"
[array]
rows = 1
cols = 1
dataflow = "output_stationary"
[sparsity]
nm = "2:4"
[pe]
kind = "int"
act_width = 8
weight_width = 8
acc_width = 32
overflow = "wrap"
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("build-cache")


def _build_in_process(verilog, cache, log_path):
    lines = []
    path = runner.build_model([verilog], "cache1x1", cache, log=lines.append)
    log_path.write_text(json.dumps({"path": str(path), "lines": lines}))


def test_concurrent_processes_build_once_with_progress(tmp_path, cache, monkeypatch):
    generated = generate(make_config(name="cache1x1", rows=1, cols=1), tmp_path / "gen")
    monkeypatch.setattr(runner, "PROGRESS_EVERY_S", 1)  # inherited by the forked processes
    context = multiprocessing.get_context("fork")
    logs = [tmp_path / f"process{i}.json" for i in range(2)]
    processes = [context.Process(target=_build_in_process, args=(generated.verilog.resolve(), cache, log))
                 for log in logs]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=600)
        assert process.exitcode == 0
    results = [json.loads(log.read_text()) for log in logs]
    assert results[0]["path"] == results[1]["path"]
    lines = results[0]["lines"] + results[1]["lines"]
    starts = [line for line in lines if "first time for this Verilog" in line]
    assert len(starts) == 1, f"expected one build between the two processes: {lines}"
    progress = [line for line in lines if re.search(r"verilator build of cache1x1: \d+ s, ", line)]
    assert progress, f"no progress line while building: {lines}"
    build = next(p for p in cache.iterdir() if p.name.startswith("cache1x1-") and p.is_dir())
    assert [p.name for p in build.iterdir()] == ["cache1x1"]  # the executable only
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]  # no staging left behind


def test_sim_uses_the_cache_and_writes_no_build_into_its_output(tmp_path, cache, capsys):
    """Same Verilog as above from another process: no rebuild; a traced build for waves."""
    config = tmp_path / "cache1x1.toml"
    config.write_text(TOML)
    out = tmp_path / "out"
    assert main(["sim", str(config), "--seed", "3", "--gemms", "2", "-o", str(out),
                 "--build-dir", str(cache)]) == 0
    text = capsys.readouterr().out
    assert "PASSED" in text and "verilator build" not in text, text
    assert main(["sim", str(config), "--seed", "3", "--gemms", "2", "-o", str(out),
                 "--build-dir", str(cache), "--waves"]) == 0
    text = capsys.readouterr().out
    assert "verilator build of cache1x1 with waves" in text
    assert (out / "waves" / "dump.vcd").stat().st_size > 0
    assert not list(out.rglob("Vtop*")) and not list(out.rglob("*.o")), "a Verilator build in the output"
