"""The nmforge command line: bad input, generate, sim, synth and the main job (flow)."""
import json
import pathlib
import re
import subprocess
import sys

import pytest

from conftest import EXAMPLES
from nmforge.cli import main
from nmforge.fpga import tools

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


def test_flow_on_the_default_example(tmp_path, capsys, monkeypatch):
    """The main job: generate + simulate + synthesize for ECP5, with a summary."""
    # every phase change is shown, however fast the tools run on this machine
    monkeypatch.setattr(tools, "PHASE_LINE_AFTER_S", 0.0)
    monkeypatch.setattr(tools, "POLL_S", 0.05)
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
    # the tools' phases while synthesis runs (the period itself: tests/test_fpga_flow.py)
    assert re.search(r"^      yosys \d+ s: ", text, re.M) and re.search(r"^      nextpnr-ecp5 \d+ s: ", text, re.M)
    # the deliverables only: the Verilator build is in the shared cache (sim.runner.build_root)
    assert not [p for p in out.rglob("*") if p.name.startswith(("Vtop", "sim_build")) or p.suffix in (".o", ".a", ".gch")]


# --- bad arguments: one line naming the argument and what is allowed, exit 2, nothing written ------

RUNTIME = EXAMPLES / "rt48_int8_4x4.toml"
FIXED = EXAMPLES / "nm24_int8_2x2.toml"


def _bad_argument(capsys, argv, *words):
    """Run the CLI on `argv`: exit status 2 and one stderr line holding every one of `words`."""
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse errors exit through SystemExit
        status = stop.code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert status == 2, (status, err, captured.out)
    assert len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, (word, err)
    return err


@pytest.mark.parametrize("patterns,words", [
    ("3:8", ("--patterns", "'3:8'", "allowed: dense, 1:2, 1:4, 2:4, 1:8, 2:8, 4:8")),
    ("2:4,,dense", ("--patterns", "empty entry", "allowed:")),
    ("dense,9:16", ("--patterns", "'9:16'", "allowed:")),
])
@pytest.mark.parametrize("command", ["sim", "flow"])
def test_bad_patterns_are_refused_before_any_build(tmp_path, capsys, patterns, words, command):
    """--patterns is checked against the design's pattern table: nothing is built or simulated, and
    an earlier run's output (a passing waveform) is left as it was."""
    out = tmp_path / "out"
    out.mkdir()
    earlier = out / "waves"
    earlier.mkdir()
    (earlier / "dump.fst").write_text("earlier waveform\n")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    _bad_argument(capsys, [command, str(RUNTIME), "-o", str(out), "--patterns", patterns], *words)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert (earlier / "dump.fst").read_text() == "earlier waveform\n"


def test_patterns_on_a_fixed_design_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    _bad_argument(capsys, ["sim", str(FIXED), "-o", str(out), "--patterns", "2:4"],
                  "--patterns", "not a run-time design", "allowed:")
    assert not out.exists()


def _unwritable_cases(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me\n")
    return {
        "existing file": (str(a_file), "not a directory"),
        "below a file": (str(a_file / "sub"), "not a directory"),
        "/dev/null": ("/dev/null", "not a directory"),
        "/proc/x": ("/proc/x", "cannot create files"),
        "name too long": (str(tmp_path / ("d" * 300)), "at most 255 bytes"),
        "empty": ("", "empty"),
    }


@pytest.mark.parametrize("case", ["existing file", "below a file", "/dev/null", "/proc/x",
                                  "name too long", "empty"])
@pytest.mark.parametrize("command", ["generate", "sim", "synth --target ecp5", "flow", "package"])
def test_unusable_output_directory(tmp_path, capsys, case, command):
    path, words = _unwritable_cases(tmp_path)[case]
    before = sorted(tmp_path.rglob("*"))
    name, *rest = command.split()
    _bad_argument(capsys, [name, str(FIXED), "-o", path, *rest], "-o/--output", words, "allowed:")
    assert sorted(tmp_path.rglob("*")) == before
    assert (tmp_path / "a_file").read_text() == "keep me\n"


def test_unwritable_directory_as_an_ordinary_user(tmp_path):
    """A directory without write permission (root writes anywhere, so the CLI runs as nobody)."""
    import os
    import tempfile
    base = pathlib.Path(tempfile.mkdtemp(prefix="nmforge-ro-", dir="/tmp"))
    try:
        locked = base / "locked"
        locked.mkdir()
        os.chmod(base, 0o755)
        os.chmod(locked, 0o555)
        # Python itself may live where nobody cannot read: load the CLI first, then drop to nobody.
        drop = "os.setgid(65534); os.setuid(65534); " if os.geteuid() == 0 else ""
        code = ("import os, sys; from nmforge.cli import main; " + drop
                + f"sys.exit(main(['generate', {str(FIXED)!r}, '-o', {str(locked / 'out')!r}]))")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=base)
        assert run.returncode == 2, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1
        assert "-o/--output" in run.stderr and "cannot create files" in run.stderr
        assert list(locked.iterdir()) == []
    finally:
        os.chmod(locked, 0o755)
        import shutil
        shutil.rmtree(base)


def test_a_317_character_name_is_a_config_error(tmp_path, capsys):
    config = tmp_path / "long.toml"
    config.write_text(GOOD.replace('name = "nm24_int8_4x4"', f'name = "{"n" * 317}"'))
    _bad_argument(capsys, ["generate", str(config), "-o", str(tmp_path / "out")], "name", "200", "allowed:")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,words", [
    (["sim", str(FIXED), "--stall", "1.5"], ("--stall", "0 <= P < 1")),
    (["sim", str(FIXED), "--gemms", "0"], ("--gemms", "1..10000")),
    (["sim", str(FIXED), "--seed", "-3"], ("--seed", "allowed")),
    (["synth", str(FIXED), "--target", "virtex"], ("--target", "ecp5")),
    (["synth", str(FIXED), "--target", "ecp5", "--pnr-seed", "x"], ("--pnr-seed", "not an integer")),
    (["synth", str(FIXED), "--target", "ice40", "--device", "85F"], ("device", "allowed: iCE40UP5K")),
    (["sim", str(FIXED), "--block", "mac"], ("--block mac", "allowed: ")),
    (["flow", str(FIXED), "--bogus"], ("unrecognized arguments: --bogus",)),
])
def test_bad_option_values(tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)  # the default output folder out/<name> would be written here
    _bad_argument(capsys, argv, *words)
    assert list(tmp_path.iterdir()) == []


def test_version(capsys):
    from nmforge import __version__
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"nmforge {__version__}"
