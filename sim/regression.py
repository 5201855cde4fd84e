"""Runs the testbench of a generated block, given its Verilog and manifest."""
import json
import pathlib

from .runner import run_testbench

TESTBENCHES = {"array": "nmforge.sim.tb_array", "pe": "nmforge.sim.tb_pe", "decoder": "nmforge.sim.tb_decoder",
               "mac": "nmforge.sim.tb_mac_fp", "accelerator": "nmforge.sim.tb_accel"}
# The "mac" block's testbench depends on the PE kind (the int MAC is verified inside tb_pe).
MAC_TESTBENCHES = {"fp": "nmforge.sim.tb_mac_fp", "posit": "nmforge.sim.tb_mac_posit"}


def testbench_for(manifest: dict) -> str:
    """The cocotb module that verifies the block a manifest describes."""
    if manifest["block"] == "array" and manifest["parameters"]["dataflow"] == "weight_stationary":
        return "nmforge.sim.tb_ws_array"
    if manifest["block"] != "mac":
        return TESTBENCHES[manifest["block"]]
    kind = manifest["parameters"]["pe_kind"]
    if kind not in MAC_TESTBENCHES:
        raise ValueError(f"no MAC-level testbench for PE kind {kind!r} (verify it with block 'pe'); "
                         f"allowed: {', '.join(MAC_TESTBENCHES)}")
    return MAC_TESTBENCHES[kind]


def run_regression(verilog: pathlib.Path | list[pathlib.Path], manifest_path: pathlib.Path,
                   work_dir: pathlib.Path, seed: int, waves: bool = False, options: dict | None = None,
                   log=print, waves_on_failure: bool = True, build_dir=None):
    """Simulate the block described by `manifest_path` in `verilog` (the generated file, or e.g. a
    gate-level netlist and its cell models); `options` become NMFORGE_* variables of the testbench
    (e.g. {"stall": 0.3, "gemms": 4}); `build_dir`: the Verilator build cache (sim.runner.build_root)."""
    manifest = json.loads(manifest_path.read_text())
    env = {"NMFORGE_MANIFEST": str(manifest_path.resolve())}
    env.update({f"NMFORGE_{key.upper()}": str(value) for key, value in (options or {}).items()})
    return run_testbench(verilog, manifest["module"], testbench_for(manifest),
                         work_dir.resolve(), env, seed, waves, log, waves_on_failure, build_dir)
