"""Shared fixtures: configs built in code, and a session-wide Verilator build cache."""
import json
import pathlib

import pytest

from nmforge.fpga.tools import run_tool
from nmforge.gen.config import ConfigError, parse_config
from nmforge.gen.generate import generate
from nmforge.sim.regression import run_regression

REPO = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def make_config(name="t", rows=2, cols=3, nm="2:4", act_width=8, weight_width=8, acc_width=32,
                overflow="wrap"):
    return parse_config({
        "name": name,
        "array": {"rows": rows, "cols": cols, "dataflow": "output_stationary"},
        "sparsity": {"nm": nm},
        "pe": {"kind": "int", "act_width": act_width, "weight_width": weight_width,
               "acc_width": acc_width, "overflow": overflow},
    }, source="test")


def assert_passed(result):
    assert result.passed, f"simulation failed (seed {result.seed}); log {result.log}; waves {result.waves}"


def flow_lines(lines: list[str]) -> list[str]:
    """A flow's log lines without the tools' progress lines (six spaces in front: a running
    Yosys or nextpnr's phase, printed once it has run a few seconds, so more of them on a
    loaded machine)."""
    return [line for line in lines if not line.startswith("      ")]


def ecp5_netlist(tmp_path, verilog, top, synth_options="") -> dict:
    """The Yosys JSON netlist of `verilog` (text) synthesized for ECP5 (`synth_ecp5`), in
    `tmp_path`."""
    (tmp_path / f"{top}.v").write_text(verilog)
    run_tool("yosys", ["-q", "-p", f"read_verilog {top}.v; synth_ecp5 {synth_options} -top {top} -json n.json"],
             cwd=tmp_path, log_file=tmp_path / "yosys.log")
    return json.loads((tmp_path / "n.json").read_text())


def ecp5_fmax(tmp_path, netlist, name) -> float:
    """Fmax (MHz) of a Yosys JSON `netlist` placed and routed out of context on the LFE5U-85F by
    nextpnr-ecp5 (target 100 MHz), in `tmp_path` as `name`.json."""
    (tmp_path / f"{name}.json").write_text(json.dumps(netlist))
    run_tool("nextpnr-ecp5", ["--85k", "--package", "CABGA381", "--json", f"{name}.json", "--out-of-context",
                              "--freq", "100", "--report", f"{name}_report.json", "-q"],
             cwd=tmp_path, log_file=tmp_path / f"{name}.log")
    report = json.loads((tmp_path / f"{name}_report.json").read_text())
    return next(iter(report["fmax"].values()))["achieved"]


def config_error(table) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(table, source="x.toml")
    err = info.value
    assert "\n" not in str(err) and str(err).startswith("x.toml: ")
    assert f": {err.field}: " in str(err) and "; allowed: " in str(err)
    return err


@pytest.fixture(scope="session")
def sim_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sim")


@pytest.fixture
def simulate(sim_cache):
    """simulate(config, block, seed=1, **options) -> (SimResult, manifest info); builds are cached
    per generated Verilog for the whole session. The array regression's per-PE overflow sweep
    (2^16 beats per PE at INT8 / 32 bits) is off unless a test asks for it (`sweep_beats`):
    tests/test_mutate.py runs it on every PE of an array whose accumulator makes it short; the
    bad-group count-up runs 2^10 beats instead of 2^15 (`count_beats`; tests/test_mutate.py runs
    the full one against a counter cut to 12 bits)."""
    def run(config, block="array", seed=1, **options):
        work = sim_cache / f"{config.name}-{block}"
        generated = generate(config, work, block)
        options = {"sweep_beats": 0, "count_beats": 1 << 10} | options
        result = run_regression(generated.verilog, generated.manifest, work, seed, options=options,
                                log=lambda line: None)
        return result, generated
    return run
