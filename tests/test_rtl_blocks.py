"""Each RTL block under cocotb on Verilator, bit-exact against golden/, for the patterns the
foundation names (dense, 1:4, 2:4, 2:8, 4:8) and more."""
import json

import pytest

from conftest import assert_passed, make_config

PATTERNS = ["4:4", "1:4", "2:4", "2:8", "4:8"]


@pytest.mark.parametrize("nm", PATTERNS + ["8:16", "1:2"])
def test_decoder_routes_and_flags(simulate, nm):
    result, _ = simulate(make_config(name=f"dec{nm.replace(':', '_')}", nm=nm), "decoder")
    assert_passed(result)


@pytest.mark.parametrize("nm", PATTERNS)
def test_pe_accumulates_tiles(simulate, nm):
    result, _ = simulate(make_config(name=f"pe{nm.replace(':', '_')}", nm=nm), "pe", stall=0.3)
    assert_passed(result)


@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
def test_pe_overflow_policy(simulate, overflow):
    config = make_config(name=f"pe16{overflow}", nm="2:4", acc_width=16, overflow=overflow)
    result, _ = simulate(config, "pe", stall=0.2)
    assert_passed(result)


@pytest.mark.parametrize("nm", PATTERNS)
def test_array_gemms_under_random_stalls(simulate, nm):
    result, _ = simulate(make_config(name=f"arr{nm.replace(':', '_')}", nm=nm), "array",
                         seed=11, gemms=4, stall=0.3)
    assert_passed(result)


@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
def test_array_overflow_flag_and_policy(simulate, overflow):
    config = make_config(name=f"arr16{overflow}", rows=2, cols=2, acc_width=16, overflow=overflow)
    result, _ = simulate(config, "array", seed=3, gemms=4, stall=0.2)
    assert_passed(result)


def test_array_flags_and_counts_malformed_metadata(simulate):
    result, _ = simulate(make_config(name="arrbad", rows=2, cols=3), "array", seed=5, gemms=2,
                         stall=0.2, corrupt=5)
    assert_passed(result)


def test_array_full_throughput_and_latency(simulate, tmp_path):
    """With no stalls a GEMM of B beats takes B + latency cycles: one beat every cycle."""
    timing = tmp_path / "timing.json"
    config = make_config(name="arrfast", rows=4, cols=4, nm="2:4")
    result, generated = simulate(config, "array", seed=2, stall=0, shape="8x64x8", result_json=timing)
    assert_passed(result)
    gemm = json.loads(timing.read_text())["gemms"][0]
    assert gemm["beats"] == (8 // 4) * (8 // 4) * (64 // 4)
    assert gemm["cycles"] <= gemm["beats"] + generated.info["latency_cycles"] + 1


def test_regression_detects_a_wrong_model(simulate):
    """The testbench can fail: tell it the design saturates when the RTL wraps, on values that
    overflow a 16-bit accumulator, and it must report a mismatch."""
    config = make_config(name="arrlie", rows=2, cols=2, acc_width=16, overflow="wrap")
    result, generated = simulate(config, "array", seed=4, gemms=2, stall=0)
    assert_passed(result)
    info = generated.info
    info["parameters"]["overflow"] = "saturate"
    generated.manifest.write_text(json.dumps(info))
    from nmforge.sim.regression import run_regression
    lied = run_regression(generated.verilog, generated.manifest, generated.verilog.parent, 4,
                          options={"gemms": 2, "stall": 0}, log=lambda line: None)
    assert not lied.passed
    assert lied.waves is not None and lied.waves.exists(), "a failing run must leave a waveform"
