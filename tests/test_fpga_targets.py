"""FPGA targets and devices (ecp5 / ice40 / gowin): the device table, report parsing on stored real
nextpnr reports of each family (tests/data/, values read by hand from the nextpnr logs), and real
Yosys + nextpnr runs of a tiny design on ECP5 LFE5U-25F, iCE40 HX8K and Gowin GW1NR-9 (no mocks).

The first run of each YoWASP tool compiles its WebAssembly once (30-60 s, cached afterwards).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nmforge.fpga import DEVICES, TARGETS, FlowError, device, format_report, synthesize
from nmforge.fpga.devices import RESOURCE_KINDS, device_names, resolve_device
from nmforge.fpga.report import (classify_resources, device_utilization, fit_problems,
                                 parse_nextpnr_report)
from conftest import flow_lines

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# The registered 8x8 multiply-add the stored *_madd8_* reports were made from: 8 + 8 + 16 input and
# 17 output flip-flops, one multiplier and a 17-bit adder.
MADD8 = """\
module madd8 (
    input  wire               clk,
    input  wire signed [7:0]  a,
    input  wire signed [7:0]  b,
    input  wire signed [15:0] c,
    output reg  signed [16:0] y
);
    reg signed [7:0] a_r, b_r;
    reg signed [15:0] c_r;
    always @(posedge clk) begin
        a_r <= a; b_r <= b; c_r <= c;
        y <= a_r * b_r + c_r;
    end
endmodule
"""
MADD8_FF = 8 + 8 + 16 + 17

# Nine registered 8x8 multiplies: one more than the 8 SB_MAC16 of an iCE40 UP5K.
MUL9 = """\
module mul9 (input clk, input [7:0] a, input [71:0] b, output reg [15:0] y);
    integer i; reg [15:0] s; reg [7:0] ar; reg [71:0] br;
    always @(posedge clk) begin
        ar <= a; br <= b;
        s = 0; for (i = 0; i < 9; i = i + 1) s = s ^ (ar * br[8*i +: 8]);
        y <= s;
    end
endmodule
"""


# --- the device table -------------------------------------------------------------------------------

def test_targets_and_devices():
    assert TARGETS == ("ecp5", "ice40", "gowin")
    assert device_names("ecp5") == ("LFE5U-85F", "LFE5U-25F", "LFE5U-45F")
    assert device_names("ice40") == ("iCE40UP5K", "iCE40HX8K")
    assert device_names("gowin") == ("GW2A-18", "GW1NR-9")
    for target in TARGETS:
        assert DEVICES[target] == device(target)  # DEVICES: the default device, flat
        for name in device_names(target):
            dev = device(target, name)
            assert dev["device"] == name and dev["target"] == target
            assert set(dev["capacity"]) == set(RESOURCE_KINDS)
            assert dev["pnr_args"][:len(dev["device_args"])] == dev["device_args"]
            if dev["ooc_args"] is None:
                assert dev["harness"] is True
    # ECP5: nextpnr --25k/--45k/--85k, CABGA381 for all three; the 85F keeps its former arguments.
    for name, flag in (("LFE5U-25F", "--25k"), ("LFE5U-45F", "--45k"), ("LFE5U-85F", "--85k")):
        dev = device("ecp5", name)
        assert dev["package"] == "CABGA381"
        assert dev["pnr_args"] == [flag, "--package", "CABGA381", "--placer-heap-timingweight", "40"]
        assert dev["synth_args"] == ["-noflatten"]
    # iCE40: -dsp only on the UP5K (the HX8K has no DSP blocks).
    assert device("ice40")["synth_args"] == ["-dsp"]
    hx = device("ice40", "iCE40HX8K")
    assert hx["synth_args"] == [] and hx["pnr_args"] == ["--hx8k", "--package", "ct256"]
    assert hx["capacity"]["DSP"] == 0
    # Gowin: himbaechel --device PART --vopt family=..., synth_gowin -family, harness pins.
    g = device("gowin", "GW1NR-9")
    assert g["nextpnr"] == "nextpnr-himbaechel-gowin" and g["part"] == "GW1NR-LV9QN88PC6/I5"
    assert g["pnr_args"] == ["--device", "GW1NR-LV9QN88PC6/I5", "--vopt", "family=GW1N-9C"]
    assert g["synth_args"] == ["-noiopads", "-family", "gw1n"]
    assert set(g["pins"]) == {"clock", "reset", "din", "dout"}
    g2 = device("gowin", "GW2A-18")
    assert g2["pnr_args"] == ["--device", "GW2A-LV18PG256C8/I7", "--vopt", "family=GW2A-18C"]
    assert g2["synth_args"][-2:] == ["-family", "gw2a"]


def test_device_names_aliases_and_errors():
    assert resolve_device("ecp5") == "LFE5U-85F"
    assert resolve_device("ecp5", "25k") == resolve_device("ecp5", "lfe5u-25f") == "LFE5U-25F"
    assert resolve_device("ice40", "HX8K") == "iCE40HX8K"
    assert resolve_device("gowin", "GW1NR-LV9QN88PC6/I5") == resolve_device("gowin", "tangnano9k") == "GW1NR-9"
    with pytest.raises(ValueError) as exc:
        device("ice40", "LFE5U-25F")
    assert str(exc.value) == "unknown device 'LFE5U-25F' for target ice40; allowed: iCE40UP5K, iCE40HX8K"
    with pytest.raises(ValueError, match="unknown FPGA target"):
        device("virtex")
    with pytest.raises(ValueError, match="allowed: GW2A-18, GW1NR-9"):
        synthesize(MADD8, "madd8", "gowin", "unused", device="GW5A-25")


# Device capacity in the table == nextpnr's BEL count in real reports of each device (IO only where
# nextpnr counts package pins: iCE40; ECP5 and Gowin count the die's pads).
@pytest.mark.parametrize("target,name,report,io", [
    ("ecp5", "LFE5U-25F", "nextpnr_ecp5_25k_madd8_ooc.json", False),
    ("ecp5", "LFE5U-45F", "nextpnr_ecp5_45k_madd8_harness.json", False),
    ("ecp5", "LFE5U-85F", "nextpnr_ecp5_acc_ooc.json", False),
    ("ice40", "iCE40UP5K", "nextpnr_ice40_mul8.json", True),
    ("ice40", "iCE40HX8K", "nextpnr_ice40_hx8k_madd8_harness.json", True),
    ("gowin", "GW1NR-9", "nextpnr_gowin_gw1nr9_madd8_harness.json", False),
    ("gowin", "GW2A-18", "nextpnr_gowin_gw2a18_madd8_harness.json", False),
])
def test_capacity_matches_nextpnr(target, name, report, io):
    dev = device(target, name)
    util = parse_nextpnr_report(DATA / report)["utilization"]
    for kind in ("LUT4", "FF", "DSP", "BRAM") + (("IO",) if io else ()):
        bel = dev["capacity_bels"][kind]
        assert dev["capacity"][kind] == (util[bel]["available"] if bel in util else 0), (kind, bel)


# --- parsing real reports of each family --------------------------------------------------------------

def test_parse_ecp5_25k_report():
    """madd8 on LFE5U-25F out of context, 100 MHz.  nextpnr log: "Max frequency for clock 'clk':
    152.70 MHz (PASS at 100.00 MHz)", "5.25 ns logic, 1.30 ns routing"; the path leaves the
    MULT18X18D (its input registers packed by dsp_pack: clock-to-P 3.86 ns) into 8 CCU2C, two
    logic steps each but the last: 17 logic lines, all in the carry chain."""
    t = parse_nextpnr_report(DATA / "nextpnr_ecp5_25k_madd8_ooc.json")
    assert (t["clock"], t["fmax_mhz"], t["constraint_mhz"], t["timing_met"]) == ("clk", 152.70, 100.0, True)
    cp = t["critical_path"]
    assert cp["from"] == "y_TRELLIS_FF_Q_11_DI_CCU2C_S0_B0_MULT18X18D_P14.P0"
    assert cp["to"] == "y_TRELLIS_FF_Q_13.DI"
    assert cp["logic_ns"] == pytest.approx(5.25, abs=0.01) and cp["routing_ns"] == pytest.approx(1.30, abs=0.01)
    assert cp["delay_ns"] == pytest.approx(1000 / 152.70, abs=0.01)
    assert (cp["logic_levels"], cp["carry_levels"]) == (17, 17)
    assert t["utilization"]["MULT18X18D"] == {"used": 1, "available": 28}


def test_parse_ice40_hx8k_report():
    """madd8 through the register harness on iCE40 HX8K-CT256, 100 MHz, multiplier in LUTs.  nextpnr
    log: "Max frequency for clock 'clk$SB_IO_IN_$glb_clk': 103.30 MHz (PASS at 100.00 MHz)",
    "4.27 ns logic, 5.41 ns routing"; 16 logic lines: 5 LUTs, then 11 carry steps (COUT)."""
    t = parse_nextpnr_report(DATA / "nextpnr_ice40_hx8k_madd8_harness.json")
    assert (t["clock"], t["fmax_mhz"], t["timing_met"]) == ("clk$SB_IO_IN_$glb_clk", 103.30, True)
    cp = t["critical_path"]
    assert (cp["from"], cp["to"]) == ("u_top.a_r_SB_DFF_Q_3_DFFLC.O", "u_top.y_SB_DFF_Q_D_SB_LUT4_O_LC.I3")
    assert cp["logic_ns"] == pytest.approx(4.27, abs=0.01) and cp["routing_ns"] == pytest.approx(5.41, abs=0.01)
    assert (cp["logic_levels"], cp["carry_levels"]) == (16, 11)
    assert cp["domain"] == "posedge clk$SB_IO_IN_$glb_clk -> posedge clk$SB_IO_IN_$glb_clk"
    assert t["utilization"]["SB_IO"] == {"used": 3, "available": 206}
    assert t["utilization"]["ICESTORM_LC"] == {"used": 316, "available": 7680}


def test_parse_gowin_reports():
    """madd8 through the harness on GW1NR-9 (Tang Nano 9K pins), 100 MHz.  nextpnr-himbaechel-gowin
    log: "Max frequency for clock '$iopadmap$clk': 242.48 MHz (PASS at 100.00 MHz)", "3.23 ns logic,
    0.89 ns routing"; 17 logic lines, all ALU carry steps (I0 -> COUT, CIN -> COUT ..., CIN -> SUM)."""
    t = parse_nextpnr_report(DATA / "nextpnr_gowin_gw1nr9_madd8_harness.json")
    assert (t["clock"], t["fmax_mhz"], t["timing_met"]) == ("$iopadmap$clk", 242.48, True)
    cp = t["critical_path"]
    assert (cp["from"], cp["to"]) == ("u_top.c_r_DFF_Q_15.Q", "u_top.y_DFF_Q.D")
    assert cp["logic_ns"] == pytest.approx(3.23, abs=0.01) and cp["routing_ns"] == pytest.approx(0.89, abs=0.01)
    assert (cp["logic_levels"], cp["carry_levels"]) == (17, 17)
    assert t["utilization"]["MULT9X9"] == {"used": 1, "available": 40}
    # The same on GW2A-18 (Tang Primer 20K): "459.14 MHz", "1.77 ns logic, 0.40 ns routing".
    t = parse_nextpnr_report(DATA / "nextpnr_gowin_gw2a18_madd8_harness.json")
    assert (t["fmax_mhz"], t["critical_path"]["from"]) == (459.14, "u_top.c_r_DFF_Q_14.Q")
    assert t["critical_path"]["logic_ns"] == pytest.approx(1.77, abs=0.01)
    assert t["critical_path"]["routing_ns"] == pytest.approx(0.40, abs=0.01)
    # mulx (p <= a_r*b_r ^ {16{x_r}}) on GW1NR-9: after routing nextpnr-himbaechel-gowin 0.11.1 finds
    # "No Fmax available; no interior timing paths found in design." (a MULT9X9 feeding registers).
    t = parse_nextpnr_report(DATA / "nextpnr_gowin_gw1nr9_mulx_nofmax.json")
    assert (t["fmax_mhz"], t["critical_path"], t["clocks"], t["timing_met"]) == (None, None, {}, True)


def test_utilization_percentages_and_fit():
    gw = device("gowin", "GW1NR-9")
    res = classify_resources({"LUT4": 10, "LUT2": 2, "ALU": 17, "DFF": 40, "DFFE": 9, "MULT9X9": 2,
                              "MULT18X18": 1, "MUX2_LUT5": 9, "SDPB": 1}, gw)
    assert (res["LUT4"], res["CARRY"], res["LUT4_total"], res["FF"], res["DSP"], res["BRAM"]) == (12, 17, 29, 49, 3, 1)
    du = device_utilization(res, gw, {"IOB": {"used": 4, "available": 276}})
    assert du["LUT4"] == {"used": 29, "available": 8640, "percent": 0.34}
    assert du["DSP"] == {"used": 4, "available": 40, "percent": 10.0, "unit": "MULT9X9"}  # 2 + 1 x 2
    assert du["IO"] == {"used": 4, "available": 71, "percent": 5.63}
    ooc = device_utilization(res, gw, {"IOB": {"used": 4, "available": 276}}, out_of_context=True)
    assert ooc["IO"]["used"] is None
    hx = device("ice40", "iCE40HX8K")
    assert device_utilization(classify_resources({"SB_LUT4": 226}, hx), hx)["DSP"]["percent"] is None
    up5k = device("ice40")
    assert fit_problems(classify_resources({"SB_MAC16": 32, "SB_LUT4": 900}, up5k), up5k) == \
        ["32 DSP (SB_MAC16) where the device has 8"]
    assert fit_problems(classify_resources({"SB_MAC16": 8}, up5k), up5k) == []


# --- real runs ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """madd8 on ECP5 LFE5U-25F (out of context), iCE40 HX8K and Gowin GW1NR-9 (register harness)."""
    base = tmp_path_factory.mktemp("targets")
    out = {}
    for target, name in (("ecp5", "LFE5U-25F"), ("ice40", "iCE40HX8K"), ("gowin", "GW1NR-9")):
        lines: list[str] = []
        report = synthesize(MADD8, "madd8", target, base / target, clock_mhz=100.0, device=name,
                            log=lines.append)
        out[target] = (report, base / target, lines)
    return out


def _check_common(report, out, target, name, dev_package, ff=MADD8_FF):
    dev = device(target, name)
    assert (report["target"], report["device"], report["package"]) == (target, name, dev_package)
    assert report["clock_mhz"] == 100.0
    assert isinstance(report["fmax_mhz"], float) and report["fmax_mhz"] > 20
    assert report["timing_met"] == (report["fmax_mhz"] >= 100.0)
    cp = report["critical_path"]
    assert cp["logic_levels"] >= 1 and 0 <= cp["carry_levels"] <= cp["logic_levels"]
    assert cp["delay_ns"] == pytest.approx(cp["logic_ns"] + cp["routing_ns"], abs=0.002)
    du = report["device_utilization"]
    assert set(du) == set(RESOURCE_KINDS)
    for kind, entry in du.items():
        assert entry["available"] == dev["capacity"][kind]
        if entry["used"] is not None and entry["available"]:
            assert entry["percent"] == round(100 * entry["used"] / entry["available"], 2)
    assert du["LUT4"]["used"] == report["resources"]["LUT4_total"]
    assert du["FF"]["used"] == report["resources"]["FF"] == ff
    assert json.loads((out / "report.json").read_text()) == report
    text = format_report(report)
    assert f"{report['fmax_mhz']:.2f} MHz" in text and "logic levels" in text
    assert f"{du['FF']['percent']:.2f}%" in text
    return du


def test_ecp5_25k_run(runs):
    report, out, lines = runs["ecp5"]
    # dsp_pack moved the 16 flip-flops of a_r and b_r into the MULT18X18D's input registers (the
    # product goes through an adder before y: no output register)
    du = _check_common(report, out, "ecp5", "LFE5U-25F", "CABGA381", ff=MADD8_FF - 16)
    assert report["dsp_register_packing"] == {"mult_blocks": 1, "input_registers": 2, "output_registers": 0,
                                             "flip_flops_removed": 16}
    assert report["out_of_context"] is True and report["harness"] is False
    assert report["resources"]["DSP"] == 1 and du["DSP"]["available"] == 28
    assert du["IO"] == {"used": None, "available": 197, "percent": None}  # out of context: no pins
    assert "--25k --package CABGA381" in lines[-1]
    assert report["capacity"] == {"LUT4": 24288, "FF": 24288, "DSP": 28, "BRAM": 56}
    assert "timing_note" not in report


def test_ice40_hx8k_run(runs):
    """No DSP blocks on the HX8K: synth_ice40 without -dsp, the 8x8 multiply goes to LUTs."""
    report, out, lines = runs["ice40"]
    du = _check_common(report, out, "ice40", "iCE40HX8K", "CT256")
    assert report["harness"] is True
    assert "synth_ice40 -top madd8_harness" in flow_lines(lines)[0]
    res = report["resources"]
    assert res["DSP"] == 0 and "SB_MAC16" not in res["cells"] and res["LUT4"] > 100
    assert du["DSP"] == {"used": 0, "available": 0, "percent": None, "unit": "SB_MAC16"}
    assert du["IO"]["used"] == 3 and du["IO"]["available"] == 206  # clk, din, dout
    assert "--hx8k --package ct256" in lines[-1]


def test_gowin_gw1nr9_run(runs):
    report, out, lines = runs["gowin"]
    du = _check_common(report, out, "gowin", "GW1NR-9", "QN88P")
    assert report["part"] == "GW1NR-LV9QN88PC6/I5" and report["board"] == "Tang Nano 9K"
    assert report["harness"] is True and report["out_of_context"] is False
    res = report["resources"]
    assert res["cells"]["MULT9X9"] == 1 and res["DSP"] == 1 and du["DSP"]["unit"] == "MULT9X9"
    assert res["CARRY"] == 17 and res["LUT4_total"] == res["LUT4"] + res["CARRY"]  # 17-bit adder: ALUs
    assert res["LUT4_kinds"] == {"logic": res["LUT4"], "carry": res["CARRY"]}
    # the placed design (harness included) as nextpnr-himbaechel-gowin's log counts it
    log_text = (out / "nextpnr.log").read_text()
    for bel in ("LUT4", "ALU", "DFF", "MULT9X9", "IOB"):
        used = re.findall(rf"^Info:\s+{bel}:\s+(\d+)/", log_text, re.M)
        assert report["placed"][bel]["used"] == int(used[-1]), bel
    assert report["placed"]["LUT4"]["used"] >= res["LUT4"] + report["harness_resources"]["LUT4"]
    # I/O buffers only on the harness: none inside top, 3 pins (clk, din, dout) on the board's pins.
    assert not {"IBUF", "OBUF"} & set(res["cells"])
    assert du["IO"] == {"used": 3, "available": 71, "percent": 4.23}
    assert (out / "madd8_harness.cst").read_text().splitlines()[1:] == \
        ['IO_LOC "clk" 52;', 'IO_LOC "din" 18;', 'IO_LOC "dout" 17;']
    assert "--device GW1NR-LV9QN88PC6/I5 --vopt family=GW1N-9C" in lines[-1]
    assert "cst=madd8_harness.cst" in lines[-1]
    assert report["clock"] == "$iopadmap$clk"
    # nextpnr-himbaechel-gowin does not time the DSP blocks: said in the report and its table
    assert "does not time the DSP blocks" in report["timing_note"]
    assert report["timing_note"] in format_report(report)


def test_too_many_dsps_is_one_line_naming_the_resource(tmp_path):
    """Nine multipliers on the UP5K's 8 SB_MAC16: refused after Yosys, before nextpnr."""
    with pytest.raises(FlowError) as exc:
        synthesize(MUL9, "mul9", "ice40", tmp_path / "up5k", log=None)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("design does not fit iCE40UP5K-SG48: it needs 9 DSP (SB_MAC16) where the device has 8")
    assert not (tmp_path / "up5k" / "nextpnr.log").exists()
    assert not (tmp_path / "up5k" / "report.json").exists()


def test_nextpnr_overuse_is_read_from_its_log():
    """When nextpnr itself runs out of a BEL type, its utilisation table names it (lines of the real
    log of the working tree's 4x4 2:4 array on the UP5K, placed without the flow's own check)."""
    from nmforge.fpga.flow import _fullest_bels
    from nmforge.fpga.report import overused_bels

    log = ("Info: Device utilisation:\n"
           "Info: \t         ICESTORM_LC:    4262/   5280    80%\n"
           "Info: \t               SB_IO:       4/     39    10%\n"
           "Info: \t        ICESTORM_DSP:      16/      8   200%\n"
           "ERROR: Unable to place cell 'u_top.pe_1_0.mac.sum0_0_SB_MAC16_O_DSP', no BELs remaining "
           "to implement cell type 'ICESTORM_DSP'\n")
    assert overused_bels(log) == [("ICESTORM_DSP", 16, 8)]
    assert overused_bels(log.replace("16/", " 8/")) == []
    assert _fullest_bels(log, device("ice40")) == [("ICESTORM_DSP", 16, 8), ("ICESTORM_LC", 4262, 5280)]


# --- the command line --------------------------------------------------------------------------------

def test_cli_bad_device_exits_2_with_one_line(tmp_path, capsys):
    from nmforge.cli import main

    out = tmp_path / "out"
    code = main(["synth", str(EXAMPLES / "nm24_int8_4x4.toml"), "--target", "ice40", "--device",
                 "LFE5U-25F", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err == ("nmforge: error: unknown device 'LFE5U-25F' for target ice40; "
                            "allowed: iCE40UP5K, iCE40HX8K\n")
    assert captured.out == ""
    assert not out.exists()  # nothing written


def test_cli_synth_with_device(tmp_path, capsys):
    """`nmforge synth CONFIG --target ecp5 --device 25k` on a 1x1 array: synth-ecp5-lfe5u-25f/."""
    from nmforge.cli import main

    text = (EXAMPLES / "nm24_int8_4x4.toml").read_text()
    text = text.replace('name = "nm24_int8_4x4"', 'name = "t11"').replace("rows = 4", "rows = 1")
    text = text.replace("cols = 4", "cols = 1")
    config = tmp_path / "t11.toml"
    config.write_text(text)
    code = main(["synth", str(config), "--target", "ecp5", "--device", "25k", "-o", str(tmp_path / "o")])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads((tmp_path / "o" / "synth-ecp5-lfe5u-25f" / "report.json").read_text())
    assert report["device"] == "LFE5U-25F" and report["top"] == "t11"
    assert report["resources"]["DSP"] == 2  # 2:4: two multipliers in the PE
    assert "LFE5U-25F-CABGA381" in printed and "logic levels" in printed
