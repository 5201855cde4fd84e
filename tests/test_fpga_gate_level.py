"""The synthesized netlist computes what the RTL computes: the iCE40 netlist of a generated array
(every multiplier in an SB_MAC16) simulated at gate level with Yosys' cell models, against the
golden GEMM model. Synthesis tools have mapping bugs; this is where they would show."""
import json
import pathlib
import re

from conftest import EXAMPLES
from nmforge.fpga.flow import format_report, synthesize
from nmforge.gen.config import load_config
from nmforge.gen.generate import generate
from nmforge.sim.regression import run_regression


def test_ice40_up5k_netlist_of_2x2_example_computes_gemms(tmp_path):
    """examples/nm24_int8_2x2.toml (2:4 INT8, 8 multipliers: the UP5K's 8 SB_MAC16 blocks) synthesized
    and placed for the UP5K, timing met at the config's clock; random GEMMs with stalls on every
    stream, bit-exact against golden, run on the post-synthesis netlist."""
    config = load_config(EXAMPLES / "nm24_int8_2x2.toml")
    gen = generate(config, tmp_path / "gen", "array")
    manifest = json.loads(gen.manifest.read_text())
    out = tmp_path / "ice40"
    report = synthesize(gen.verilog, manifest["module"], "ice40", out, ports=manifest,
                        clock_mhz=config.clock_mhz, log=None)
    assert report["device"] == "iCE40UP5K" and report["timing_met"]
    assert report["resources"]["DSP"] == manifest["parameters"]["multipliers"] == 8
    # the report gives the whole placed design's logic cells (harness included), as nextpnr counts them
    log_text = (out / "nextpnr.log").read_text()
    lc = re.findall(r"^Info:\s+ICESTORM_LC:\s+(\d+)/\s*5280", log_text, re.M)
    assert report["placed"]["ICESTORM_LC"] == {"used": int(lc[-1]), "available": 5280,
                                               "percent": round(100 * int(lc[-1]) / 5280, 2)}
    assert int(lc[-1]) > report["resources"]["LUT4_total"]  # the harness and FF-only cells are in it
    assert f"ICESTORM_LC   {lc[-1]}" in format_report(report)
    netlist = out / report["files"]["gate_netlist"]
    models = pathlib.Path(report["files"]["cell_models"])
    assert "SB_MAC16" in netlist.read_text() and "module SB_MAC16" in models.read_text()
    result = run_regression([netlist, models], gen.manifest, tmp_path / "sim", seed=3,
                            options={"gemms": 3, "stall": 0.3}, log=lambda line: None)
    assert result.passed, f"gate-level simulation failed; log {result.log}, waves {result.waves}"
    assert result.tests == 1
