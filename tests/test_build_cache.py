"""The shared Verilator build cache: one build per Verilog text for every process and work
directory, progress lines while it builds, nothing of it in the user's output directory; waveforms
are FST (read back with pywellen), without Amaranth's anonymous `$N` nets."""
import json
import multiprocessing
import re

import pytest
from pywellen import Waveform

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
    assert f"waves {out / 'waves' / 'dump.fst'}" in text
    names = _check_fst(out / "waves" / "dump.fst")
    for name in ("cache1x1.clk", "cache1x1.act__valid", "cache1x1.act__payload.last",
                 "cache1x1.weight__payload[0].indices", "cache1x1.result__payload", "cache1x1.pe_0_0.mac.result"):
        assert name in names, (name, sorted(names)[:50])
    assert not list(out.rglob("*.vcd"))
    assert not list(out.rglob("Vtop*")) and not list(out.rglob("*.o")), "a Verilator build in the output"


def test_a_failing_run_is_repeated_with_an_fst_waveform(tmp_path, cache):
    generated = generate(make_config(name="cache1x1", rows=1, cols=1), tmp_path / "gen")
    lines = []
    result = runner.run_testbench(generated.verilog, "cache1x1", "tb_always_fails", tmp_path / "work",
                                  {}, seed=5, log=lines.append, build_dir=cache)
    assert not result.passed and result.failures == 1
    assert "[sim] FAILED with seed 5; re-running with waves" in lines
    assert result.waves == tmp_path / "work" / "waves" / "dump.fst"
    assert "cache1x1.rst" in _check_fst(result.waves)


def _check_fst(path):
    """The full names of the variables of the FST waveform `path`, after checking that it is one,
    that the clock toggles in it, and that it holds no anonymous `$N` net (Amaranth's names of
    intermediate expressions, and Yosys' `$auto$...` helpers: sim.runner.WAVES_VLT)."""
    assert path.read_bytes()[:1] == b"\x00", "not an FST file (its first block is the header, type 0)"
    waveform = Waveform(str(path))
    assert waveform.file_format == "FST"
    variables = {var.full_name: var for var in waveform.all_vars()}
    clock = variables[next(name for name in variables if name.endswith(".clk"))].signal
    assert {clock.value_at(t) for t in range(0, 100_000, 1000)} == {0, 1}
    anonymous = [name for name in variables if name.rsplit(".", 1)[-1].startswith("$")]
    assert not anonymous, anonymous[:10]
    return set(variables)
