"""The nmforge command line: bad input, generate, sim, synth and the main job (flow)."""
import json
import subprocess
import sys

import pytest

from conftest import EXAMPLES
from nmforge.cli import main

GOOD = (EXAMPLES / "nm24_int8_4x4.toml").read_text()

BAD_CONFIGS = {
    "unknown key": (GOOD.replace("[pe]", "[pe]\nspeed = 3"), "pe.speed"),
    "N > M": (GOOD.replace('nm = "2:4"', 'nm = "5:4"'), "sparsity.nm"),
    "M not allowed": (GOOD.replace('nm = "2:4"', 'nm = "2:6"'), "sparsity.nm"),
    "width out of range": (GOOD.replace("act_width = 8", "act_width = 17"), "pe.act_width"),
    "rows out of range": (GOOD.replace("rows = 4", "rows = 65"), "array.rows"),
    "cols out of range": (GOOD.replace("cols = 4", "cols = 0"), "array.cols"),
    "not a verilog name": (GOOD.replace('name = "nm24_int8_4x4"', 'name = "4x4-array"'), "name"),
    "verilog keyword": (GOOD.replace('name = "nm24_int8_4x4"', 'name = "module"'), "name"),
}


@pytest.mark.parametrize("command", ["generate", "sim", "synth --target ecp5", "flow"])
@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, case, command):
    text, field = BAD_CONFIGS[case]
    config = tmp_path / "bad.toml"
    config.write_text(text)
    out = tmp_path / "out"
    status = main([*command.split()[:1], str(config), "-o", str(out), *command.split()[1:]])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1 and field in err and "allowed" in err, err
    assert not out.exists()


def test_missing_file_through_the_console_script(tmp_path):
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "nmforge.cli", "generate", str(tmp_path / "nope.toml"),
                          "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "nope.toml" in run.stderr
    assert not out.exists()


def test_generate_is_byte_identical_and_manifest_complete(tmp_path):
    config = EXAMPLES / "nm24_int8_4x4.toml"
    for run in ("a", "b"):
        assert main(["generate", str(config), "-o", str(tmp_path / run)]) == 0
    first, second = (tmp_path / run / "nm24_int8_4x4.v" for run in ("a", "b"))
    assert first.read_bytes() == second.read_bytes()
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    ports = {p["name"]: p for p in manifest["ports"]}
    # 4 rows x 4 activations x 8 bits + last; 4 columns x 2 x (8-bit value + 2-bit index); 4x4x32 results
    assert ports["act__payload"] == {"name": "act__payload", "direction": "input", "width": 4 * 4 * 8 + 1}
    assert ports["weight__payload"]["width"] == 4 * 2 * (8 + 2)
    assert ports["result__payload"] == {"name": "result__payload", "direction": "output", "width": 4 * 4 * 32}
    assert {"clk", "rst", "act__valid", "act__ready", "overflow", "meta_error", "bad_groups"} <= set(ports)
    assert manifest["parameters"]["n"] == 2 and manifest["parameters"]["m"] == 4
    assert manifest["latency_cycles"] > 0 and "valid" in manifest["stream_protocol"]
    assert manifest["generator"]["name"] == "nmforge" and len(manifest["config_hash"]) == 64
    edited = tmp_path / "edited.toml"
    edited.write_text(config.read_text().replace("acc_width = 32", "acc_width = 24"))
    assert main(["generate", str(edited), "-o", str(tmp_path / "c")]) == 0
    other = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert other["config_hash"] != manifest["config_hash"]


def test_sim_command_passes_and_reports_seed(tmp_path, capsys):
    config = tmp_path / "small.toml"
    config.write_text(GOOD.replace("rows = 4", "rows = 2").replace("cols = 4", "cols = 2")
                      .replace("nm24_int8_4x4", "tiny_array"))
    assert main(["sim", str(config), "--seed", "9", "--gemms", "2", "-o", str(tmp_path / "out")]) == 0
    assert "PASSED" in capsys.readouterr().out


def test_flow_on_the_default_example(tmp_path, capsys):
    """The main job: generate + simulate + synthesize for ECP5, with a summary."""
    out = tmp_path / "flow"
    assert main(["flow", str(EXAMPLES / "nm24_int8_4x4.toml"), "-o", str(out), "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert "[1/3]" in text and "[2/3]" in text and "[3/3]" in text and "summary" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["simulation"]["passed"]
    synthesis = summary["synthesis"]
    assert synthesis["resources"]["DSP"] == 4 * 4 * 2  # one MULT18X18D per multiplier
    assert synthesis["fmax_mhz"] > 0
    report = json.loads((out / "synth-ecp5" / "report.json").read_text())
    assert report["resources"]["LUT4_total"] == synthesis["resources"]["LUT4_total"]
