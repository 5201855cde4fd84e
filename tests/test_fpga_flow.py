"""FPGA flow (nmforge.fpga): real Yosys + nextpnr runs (YoWASP from PyPI, no mocks) and report parsing.

The first run of each YoWASP tool compiles its WebAssembly once (30-60 s, cached afterwards).
The parsing tests read nextpnr JSON reports stored in tests/data/ (see tests/data/README.md).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from nmforge.fpga import DEVICES, TARGETS, FlowError, format_report, synthesize
from nmforge.fpga import tools
from nmforge.fpga.report import classify_resources, count_cells, parse_nextpnr_report
from nmforge.gen.config import load_config
from nmforge.gen.generate import generate

from conftest import EXAMPLES, flow_lines

DATA = Path(__file__).parent / "data"

# Registered signed 8x8 multiply with registered inputs: 8 + 8 + 16 = 32 flip-flops, one multiplier.
MUL8 = """\
module mul8 (
    input  wire               clk,
    input  wire signed [7:0]  a,
    input  wire signed [7:0]  b,
    output reg  signed [15:0] p
);
    reg signed [7:0] a_r, b_r;
    always @(posedge clk) begin
        a_r <= a;
        b_r <= b;
        p   <= a_r * b_r;
    end
endmodule
"""
# The same with a register behind the product register: on ECP5, dsp_pack moves a_r, b_r and the
# product register into the MULT18X18D, and p keeps a fabric flip-flop for nextpnr to time.
MUL8_PIPELINED = MUL8.replace("p   <= a_r * b_r;", "p_r <= a_r * b_r;\n        p   <= p_r;").replace(
    "reg signed [7:0] a_r, b_r;", "reg signed [7:0] a_r, b_r;\n    reg signed [15:0] p_r;")


@pytest.fixture(scope="module")
def ecp5_run(tmp_path_factory):
    """One real ECP5 run (file input), shared by the tests that inspect its outputs."""
    base = tmp_path_factory.mktemp("fpga_ecp5")
    src = base / "src" / "mul8.v"
    src.parent.mkdir()
    src.write_text(MUL8_PIPELINED)
    out = base / "out"
    lines: list[str] = []
    report = synthesize(src, "mul8", "ecp5", out, clock_mhz=100.0, log=lines.append)
    return report, out, lines


def test_ecp5_multiply_report(ecp5_run):
    report, out, lines = ecp5_run
    assert report["top"] == "mul8" and report["target"] == "ecp5"
    assert (report["device"], report["package"]) == ("LFE5U-85F", "CABGA381")
    assert report["out_of_context"] is True and report["clock_mhz"] == 100.0
    res = report["resources"]
    assert res["DSP"] == 1
    assert res["LUT4"] >= 0
    # dsp_pack moved a_r, b_r and p_r into the block's input and output registers: p is left
    assert res["FF"] == 16
    assert report["dsp_register_packing"] == {"mult_blocks": 1, "input_registers": 2, "output_registers": 1,
                                              "flip_flops_removed": 32}
    assert res["BRAM"] == 0
    assert res["cells"]["MULT18X18D"] == 1
    assert res["LUT4_total"] == res["LUT4"] + 2 * res["CARRY"]
    assert report["capacity"] == {"LUT4": 83640, "FF": 83640, "DSP": 156, "BRAM": 208}
    assert report["clock"] == "clk"
    assert report["fmax_mhz"] > 50
    assert report["timing_met"] == (report["fmax_mhz"] >= 100.0)
    cp = report["critical_path"]
    assert cp["from"] and cp["to"] and cp["delay_ns"] > 0
    assert cp["domain"] == "posedge clk -> posedge clk"
    assert cp["delay_ns"] == pytest.approx(1000.0 / report["fmax_mhz"], rel=0.02)
    assert report["tools"]["yosys"].startswith("Yosys ")
    assert report["tools"]["nextpnr"].startswith("nextpnr")
    # one result line per step (progress lines, indented, only for steps longer than a few seconds)
    results = [ln for ln in lines if not ln.startswith(" ")]
    assert [ln.split()[0] for ln in results] == ["[synth]", "[pnr]"]
    assert "synth_ecp5 -noflatten -top mul8" in results[0] and "--out-of-context" in results[1]
    # artifacts
    for name in ("yosys.log", "netlist.json", "stat.json", "nextpnr.log", "nextpnr_report.json"):
        assert (out / name).is_file(), name


def test_report_json_equals_returned_dict(ecp5_run):
    report, out, _ = ecp5_run
    assert json.loads((out / "report.json").read_text()) == report


def test_cell_counts_agree_with_yosys_stat(ecp5_run):
    """Our netlist cell counts are exactly what `yosys stat -json` reports for the design."""
    report, out, _ = ecp5_run
    stat = json.loads((out / "stat.json").read_text())
    by_type = stat["design"]["num_cells_by_type"]
    assert report["resources"]["cells"] == by_type
    assert count_cells(out / "netlist.json") == by_type  # top found from the netlist's attribute


def test_format_report_shows_numbers(ecp5_run):
    report, _, _ = ecp5_run
    text = format_report(report)
    assert f"{report['fmax_mhz']:.2f} MHz" in text
    assert report["critical_path"]["from"] in text and report["critical_path"]["to"] in text
    rows = {ln.split()[0]: ln.split() for ln in text.splitlines()[1:]}
    assert rows["FF"][1:3] == [str(report["resources"]["FF"]), "83640"]
    assert rows["DSP"][1:4] == ["1", "156", "0.64%"]
    assert "timing met" in text


def test_ice40_multiply_uses_dsp(tmp_path):
    lines: list[str] = []
    report = synthesize(MUL8, "mul8", "ice40", tmp_path / "ice40", log=lines.append)  # Verilog text
    assert (tmp_path / "ice40" / "mul8.v").read_text() == MUL8
    assert (report["device"], report["package"]) == ("iCE40UP5K", "SG48")
    assert report["resources"]["DSP"] == 1
    assert report["resources"]["cells"].get("SB_MAC16") == 1
    assert report["out_of_context"] is False  # nextpnr-ice40 has no out-of-context mode
    assert report["capacity"]["DSP"] == 8
    assert report["utilization"]["ICESTORM_DSP"]["used"] == 1
    assert json.loads((tmp_path / "ice40" / "report.json").read_text()) == report
    assert "synth_ice40 -dsp -top mul8" in flow_lines(lines)[0]
    assert "12.50%" in format_report(report)  # 1 of 8 DSPs


def test_syntax_error_raises_one_line_flow_error(tmp_path):
    src = tmp_path / "bad.v"
    src.write_text("module bad(input clk, output reg q);\n  always @(posedge clk) q <= ;\nendmodule\n")
    with pytest.raises(FlowError) as exc:
        synthesize(src, "bad", "ecp5", tmp_path / "out", log=None)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("yosys failed")
    assert "ERROR" in msg and "syntax error" in msg
    assert str(tmp_path / "out" / "yosys.log") in msg
    assert not (tmp_path / "out" / "report.json").exists()


def test_unknown_target_and_device_table():
    assert set(TARGETS) >= {"ecp5", "ice40"}
    for dev in DEVICES.values():
        assert {"device", "package", "synth", "nextpnr", "pnr_args", "cells", "capacity"} <= set(dev)
    with pytest.raises(ValueError, match="unknown FPGA target"):
        synthesize(MUL8, "mul8", "virtex", "unused")


# --- parsing stored real tool output ------------------------------------------------------------

def test_parse_ecp5_report_timing_failure():
    """acc (p <= p + a*b + (a^b)) on ECP5 out of context at 120 MHz: nextpnr log said
    "Max frequency for clock 'clk': 103.44 MHz (FAIL at 120.00 MHz)", "5.96 ns logic, 3.70 ns routing"."""
    t = parse_nextpnr_report(DATA / "nextpnr_ecp5_acc_ooc.json")
    assert t["clock"] == "clk"
    assert t["fmax_mhz"] == 103.44
    assert t["constraint_mhz"] == 120.0
    assert t["timing_met"] is False
    cp = t["critical_path"]
    assert cp["from"] == "a_r_TRELLIS_FF_Q_7.Q"
    assert cp["to"] == "p_TRELLIS_FF_Q_15.DI"
    assert cp["delay_ns"] == pytest.approx(9.667, abs=1e-3)
    assert cp["logic_ns"] == pytest.approx(5.96, abs=0.01)
    assert cp["routing_ns"] == pytest.approx(3.70, abs=0.01)
    assert cp["domain"] == "posedge clk -> posedge clk"
    assert t["utilization"]["TRELLIS_COMB"] == {"used": 53, "available": 83640}
    assert t["utilization"]["TRELLIS_FF"] == {"used": 32, "available": 83640}
    assert t["utilization"]["MULT18X18D"] == {"used": 1, "available": 156}


def test_parse_ecp5_report_with_pins_derived_clock_name():
    """mul8 on ECP5 with I/O on pins: the clock net is '$glbnet$clk$TRELLIS_IO_IN'; the reg-to-reg
    path (6.88 ns) is chosen over the longer I/O paths (<async>)."""
    t = parse_nextpnr_report(DATA / "nextpnr_ecp5_mul8_pins.json")
    assert t["clock"] == "$glbnet$clk$TRELLIS_IO_IN"
    assert t["fmax_mhz"] == 145.29
    assert t["timing_met"] is True
    cp = t["critical_path"]
    assert (cp["from"], cp["to"]) == ("a_r_TRELLIS_FF_Q_7.Q", "p_TRELLIS_FF_Q_6.M")
    assert cp["delay_ns"] == pytest.approx(0.525 + 1.297 + 3.927 + 1.134, abs=1e-3)
    assert t["utilization"]["TRELLIS_IO"]["used"] == 33


def test_parse_ice40_report_without_fmax():
    """mul8 on iCE40: SB_MAC16 absorbs all registers, so nextpnr reports no Fmax, only I/O paths."""
    t = parse_nextpnr_report(DATA / "nextpnr_ice40_mul8.json")
    assert t["fmax_mhz"] is None and t["clocks"] == {}
    assert t["timing_met"] is True
    assert t["clock"] == "clk$SB_IO_IN_$glb_clk"
    cp = t["critical_path"]
    assert (cp["from"], cp["to"]) == ("p_SB_MAC16_O_DSP.O_3", "p[3]$sb_io.D_OUT_0")
    assert cp["delay_ns"] == pytest.approx(8.016, abs=1e-3)
    assert cp["domain"] == "posedge clk$SB_IO_IN_$glb_clk -> <async>"
    assert t["utilization"]["ICESTORM_DSP"] == {"used": 1, "available": 8}
    assert "n/a" in format_report({"resources": {}, "fmax_mhz": None, "timing_met": True,
                                   "critical_path": cp, "clock": t["clock"]})


def nextpnr_log_number(log_text: str, label: str) -> int:
    """The used count on nextpnr's last log line ``Info: <label>: <used>/<available>``, read here
    independently of nmforge.fpga.report."""
    import re
    found = re.findall(rf"^Info:\s+{re.escape(label)}:\s+(\d+)/", log_text, re.M)
    assert found, f"no '{label}' line in the nextpnr log"
    return int(found[-1])


@pytest.fixture(scope="module")
def ecp5_array_run(tmp_path_factory):
    """The smallest example array (nm24_int8_2x2: its output queue is distributed RAM) on ECP5."""
    base = tmp_path_factory.mktemp("ecp5_array")
    config = load_config(EXAMPLES / "nm24_int8_2x2.toml")
    gen = generate(config, base)
    report = synthesize(gen.verilog, config.name, "ecp5", base / "synth", clock_mhz=config.clock_mhz,
                        log=None)
    return report, (base / "synth" / "nextpnr.log").read_text()


def test_lut4_total_equals_nextpnrs_total_lut4s(ecp5_array_run):
    """LUT4_total is nextpnr-ecp5's "Total LUT4s" of the same run, and each kind its own line:
    logic, carry, distributed RAM (TRELLIS_DPR16X4) and its write ports."""
    report, log_text = ecp5_array_run
    res = report["resources"]
    assert res["LUTRAM"] > 0 and res["cells"]["TRELLIS_DPR16X4"] == res["LUTRAM"]
    assert res["LUT4_total"] == nextpnr_log_number(log_text, "Total LUT4s")
    for kind, label in (("logic", "logic LUTs"), ("carry", "carry LUTs"), ("ram", "RAM LUTs"),
                        ("ramw", "RAMW LUTs")):
        assert res["LUT4_kinds"][kind] == nextpnr_log_number(log_text, label), kind
    assert report["nextpnr_lut4"]["total"] == res["LUT4_total"]
    assert report["device_utilization"]["LUT4"]["used"] == res["LUT4_total"]
    assert report["placed"]["TRELLIS_COMB"]["used"] == nextpnr_log_number(log_text, "TRELLIS_COMB")
    text = format_report(report)
    assert f"LUT4 total  " in text and str(res["LUT4_total"]) in text
    assert f"ram ({res['LUTRAM']} distributed RAMs)" in text


def test_lut4_counting_ecp5():
    """acc's Yosys stat: 31 LUT4, 8 CCU2C; nextpnr: "logic LUTs: 31", "carry LUTs: 16", "Total LUT4s: 47"."""
    res = classify_resources({"CCU2C": 8, "LUT4": 31, "MULT18X18D": 1, "TRELLIS_FF": 32}, "ecp5")
    assert (res["LUT4"], res["CARRY"], res["LUT4_total"], res["FF"], res["DSP"]) == (31, 8, 47, 32, 1)
    # nm24_int8_4x4 on ECP5, nextpnr: "Total LUT4s: 2917", logic 1285, carry 864, RAM 512, RAMW 256
    res = classify_resources({"LUT4": 1285, "CCU2C": 432, "TRELLIS_DPR16X4": 128}, "ecp5")
    assert res["LUT4_kinds"] == {"logic": 1285, "carry": 864, "ram": 512, "ramw": 256}
    assert res["LUT4_total"] == 2917
    res = classify_resources({"SB_LUT4": 10, "SB_CARRY": 4, "SB_DFFE": 3, "SB_DFFSR": 2,
                              "SB_RAM40_4K": 1}, "ice40")
    assert (res["LUT4"], res["CARRY"], res["LUT4_total"], res["FF"], res["BRAM"]) == (10, 4, 10, 5, 1)


def test_tool_found_through_python_module(monkeypatch):
    """Without console scripts (neither next to sys.executable nor on PATH) the package is run directly."""
    monkeypatch.delenv("NMFORGE_NEXTPNR_ICE40", raising=False)
    monkeypatch.setattr(tools.shutil, "which", lambda *a, **k: None)
    tools.find_tool.cache_clear()
    try:
        tool = tools.find_tool("nextpnr-ice40")
        assert tool.origin == "module"
        proc = subprocess.run([*tool.argv, "--version"], capture_output=True, text=True, timeout=600)
        assert "nextpnr" in proc.stdout + proc.stderr
    finally:
        monkeypatch.undo()
        tools.find_tool.cache_clear()
    assert tools.find_tool("nextpnr-ice40").origin in ("venv", "path", "env")


def test_progress_lines_name_the_tools_phases_while_they_run(tmp_path, monkeypatch):
    """While Yosys and nextpnr run, the flow prints their current phase, read from their logs as
    they grow, with the elapsed time; here every 0.5 s, the log read every 0.05 s (the flow's own
    period is 20 s, read every second: a small design's Yosys run is over in about a second on a
    quiet machine)."""
    import re
    import time as clock
    monkeypatch.setattr(tools, "PROGRESS_EVERY_S", 0.5)
    monkeypatch.setattr(tools, "PHASE_LINE_AFTER_S", 0.0)
    monkeypatch.setattr(tools, "POLL_S", 0.05)
    stamped: list[tuple[float, str]] = []
    synthesize(MUL8, "mul8", "ecp5", tmp_path / "out", clock_mhz=100.0,
               log=lambda line: stamped.append((clock.monotonic(), line)))
    progress = [(t, ln) for t, ln in stamped if ln.startswith(" ")]
    results = [ln for _, ln in stamped if not ln.startswith(" ")]
    assert [ln.split()[0] for ln in results] == ["[synth]", "[pnr]"]
    shape = re.compile(r"^      (yosys|nextpnr-ecp5) \d+ s: \S")
    assert progress and all(shape.match(ln) for _, ln in progress), progress
    yosys = [ln for _, ln in progress if " yosys " in ln]
    nextpnr = [ln for _, ln in progress if "nextpnr-ecp5" in ln]
    assert any("Executing" in ln for ln in yosys), yosys  # Yosys' numbered passes
    assert any(re.search(r"Pack|Plac|Rout", ln) for ln in nextpnr), nextpnr  # nextpnr's steps
    # no silence longer than the period (plus the 1 s poll) while a tool runs (between two
    # tools the flow reads the first one's results: not a tool's silence)
    for tool in (" yosys ", " nextpnr-ecp5 "):
        runs = [t for t, ln in progress if tool in ln]
        assert all(b - a < 0.5 + 1.6 for a, b in zip(runs, runs[1:])), (tool, runs)
