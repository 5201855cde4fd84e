"""Run-time N:M patterns (dual mode, `sparsity.runtime = true`): one generated design runs, chosen
per GEMM by the pattern id travelling with the weights, dense and every N':M' of its table
(golden.nm.runtime_patterns), without regeneration and without reset.

* the decoder (rtl.decoder.RuntimeNMDecoder) against golden/nm.py in the Amaranth simulator;
* config: what run-time designs refuse, what the manifest says;
* the cocotb array regression of one 4:8-capable array in 4:8, 2:8, 1:8, 2:4, 1:4, 1:2 and dense,
  switched back to back in one simulation (random stalls; also with the GEMMs' beats streamed
  without a gap between them);
* malformed metadata (indices and unknown pattern ids) injected into random groups is flagged and
  counted exactly;
* short tiles (1:8 of K=256 on a 4x4 array: 8 beats) stream at one beat per cycle.
"""
import json

import numpy as np
import pytest
from amaranth import signed
from amaranth.sim import Simulator

from nmforge.gen.config import ConfigError, parse_config
from nmforge.golden.nm import (pattern_id_bits, runtime_bad_groups, runtime_index_bits,
                               runtime_patterns)
from nmforge.rtl.decoder import RuntimeNMDecoder

from conftest import assert_passed

SWITCHED = "4:8,2:8,1:8,2:4,1:4,1:2,dense"


def runtime_config(name, nm="4:8", rows=2, cols=3, **pe):
    return parse_config({
        "name": name,
        "array": {"rows": rows, "cols": cols, "dataflow": "output_stationary"},
        "sparsity": {"nm": nm, "runtime": True},
        "pe": {"kind": "int", "act_width": 8, "weight_width": 8, "acc_width": 32,
               "overflow": "wrap"} | pe,
    }, source="test")


# --- the decoder, cocotb-free ---------------------------------------------------------------------

def _random_words(rng, n, mmax, count):
    """(pattern id, indices) words: well-formed ones of every pattern, plus random ones (unknown
    ids and malformed indices among them)."""
    table = runtime_patterns(n, mmax)
    words = []
    for _ in range(count):
        pid = int(rng.integers(len(table)))
        np_, mp = table[pid]
        idx = np.concatenate([np.sort(rng.choice(mp, np_, replace=False)) for _ in range(n // np_)])
        words.append((pid, [int(x) for x in idx]))
    for _ in range(count):
        words.append((int(rng.integers(1 << pattern_id_bits(n, mmax))),
                      [int(x) for x in rng.integers(0, 1 << runtime_index_bits(mmax), n)]))
    return words


@pytest.mark.parametrize("n,mmax", [(4, 8), (2, 4), (3, 8), (1, 8), (4, 16)])
def test_runtime_decoder_simulates_like_golden(n, mmax):
    dut = RuntimeNMDecoder(n, mmax, signed(8))
    table = runtime_patterns(n, mmax)
    rng = np.random.default_rng(n * 100 + mmax)
    words = _random_words(rng, n, mmax, 300)
    want_bad = runtime_bad_groups(np.array([[pid for pid, _ in words]]),
                                  np.array([idx for _, idx in words]).T, n, mmax)[0]
    checked = []

    async def bench(ctx):
        for (pid, idx), bad in zip(words, want_bad):
            window = [int(v) for v in rng.integers(-128, 128, n * mmax)]
            for p, v in enumerate(window):
                ctx.set(dut.group[p], v)
            ctx.set(dut.pattern, pid)
            for i, x in enumerate(idx):
                ctx.set(dut.indices[i], x)
            assert ctx.get(dut.bad_groups) == bad, (pid, idx)
            assert ctx.get(dut.malformed) == (bad > 0), (pid, idx)
            if not bad:
                want = [window[i * mmax + idx[i]] for i in range(n)]
                assert [ctx.get(dut.operands[i]) for i in range(n)] == want, (pid, idx)
                checked.append(pid)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert set(checked) == set(range(len(table)))  # every pattern routed at least once
    assert (want_bad > 1).any() or n == 1          # words with several bad groups were counted


def test_runtime_decoder_draws_on_its_lane_block_only():
    """Per-multiplier Mmax:1 muxes: 4:8 operand i reads only window positions 8i..8i+7."""
    dec = RuntimeNMDecoder(4, 8, signed(8))
    dec._MustUse__silence = True  # built only to read its routing (Amaranth's opt-out)
    assert [dec.candidates(i) for i in range(4)] == [list(range(8 * i, 8 * i + 8)) for i in range(4)]
    assert dec.window == 32 and len(dec.patterns) == 7


# --- config and manifest ---------------------------------------------------------------------------

def test_runtime_config_refusals():
    with pytest.raises(ConfigError, match="sparsity.encoding: run-time patterns need index"):
        parse_config({"name": "x", "array": {"rows": 1, "cols": 1, "dataflow": "output_stationary"},
                      "sparsity": {"nm": "4:8", "runtime": True, "encoding": "bitmap"},
                      "pe": {"kind": "int", "act_width": 8, "weight_width": 8, "acc_width": 32,
                             "overflow": "wrap"}}, source="t")
    with pytest.raises(ConfigError, match="sparsity.runtime: .* not implemented for pe.kind 'fp'"):
        parse_config({"name": "x", "array": {"rows": 1, "cols": 1, "dataflow": "output_stationary"},
                      "sparsity": {"nm": "2:4", "runtime": True},
                      "pe": {"kind": "fp", "act_format": "fp8_e4m3", "weight_format": "fp8_e4m3",
                             "accumulate": "exact"}}, source="t")
    cfg = runtime_config("x", nm="4:4")
    assert not cfg.dense and cfg.dense_macs_per_cycle == 2 * 3 * 16


# --- the generated array under cocotb ---------------------------------------------------------------

def test_runtime_decoder_block_regression(simulate):
    """`nmforge sim --block decoder` of a run-time design (sim/tb_decoder.py): every pattern id,
    well-formed and random words, against golden.nm on Verilator."""
    result, _ = simulate(runtime_config("rt48dec"), "decoder")
    assert_passed(result)


def test_runtime_pe_accumulates_tiles_of_every_pattern(simulate):
    """The PE alone (sim/tb_pe.py): 40 tiles, each in the next pattern of the table, with bubbles;
    every result bit-exact and exactly `latency` cycles after its tile's last beat."""
    result, _ = simulate(runtime_config("rt48pe"), "pe", seed=3, stall=0.3)
    assert_passed(result)


def test_runtime_array_switches_patterns_back_to_back(simulate, tmp_path):
    """One 4:8-capable array runs 4:8, 2:8, 1:8, 2:4, 1:4, 1:2 and dense in turn (twice round,
    full-range and corner operands), in one simulation, no reset between GEMMs; random stalls;
    then the corners: one-beat tiles, and one GEMM per pattern of the table carrying its every
    malformation in every column."""
    timing = tmp_path / "timing.json"
    result, generated = simulate(runtime_config("rt48"), "array", seed=21, gemms=14, stall=0.3,
                                 patterns=SWITCHED, result_json=timing)
    assert_passed(result)
    p = generated.info["parameters"]
    assert p["runtime"] and p["patterns"] == ["dense", "1:2", "1:4", "2:4", "1:8", "2:8", "4:8"]
    assert p["window"] == 32 and p["pattern_bits"] == 3 and p["index_bits"] == 3
    fields = generated.info["interfaces"]["weight"]["payload"]["element"]["fields"]
    assert set(fields) == {"values", "pattern", "indices"}
    gemms = json.loads(timing.read_text())["gemms"]
    ran = [g["pattern"] for g in gemms if not any(g.get(role) for role in ("burst", "sweep", "queue"))]
    assert ran == SWITCHED.split(",") * 2 and gemms[len(ran)]["burst"]  # then the one-beat-tile corner
    assert [g["pattern"] for g in gemms[len(ran) + 1:] if g.get("sweep")] == p["patterns"]


@pytest.mark.slow
def test_runtime_array_streams_patterns_without_a_gap(simulate, tmp_path):
    """The same design, the GEMMs' beats streamed back to back: the pattern changes from one beat
    to the next while earlier tiles are still in the pipeline."""
    timing = tmp_path / "timing.json"
    result, _ = simulate(runtime_config("rt48"), "array", seed=22, gemms=7, stall=0.2,
                         patterns="1:8,dense,2:4,4:8,1:4,2:8,1:2", overlap=1, result_json=timing)
    assert_passed(result)
    assert json.loads(timing.read_text())["total_cycles"] > 0


def test_runtime_array_counts_malformed_metadata(simulate):
    """Per GEMM, 5 bad groups injected into random words (broken indices, or an unknown pattern
    id, which counts as one group); bad_groups must equal the injected count (per row tile)."""
    result, _ = simulate(runtime_config("rt48"), "array", seed=23, gemms=7, stall=0.2, corrupt=5,
                         patterns=SWITCHED)
    assert_passed(result)


@pytest.mark.slow
def test_runtime_array_short_tiles_at_full_rate(simulate, tmp_path):
    """1:8 of K=256 on a 4x4 array: 8 beats per tile, fewer than the pipeline latency; the output
    queue takes the tiles back to back, so 16 tiles take 128 beats + latency cycles."""
    timing = tmp_path / "timing.json"
    config = runtime_config("rt48x44", rows=4, cols=4)
    result, generated = simulate(config, "array", seed=2, stall=0, shape="16x256x16",
                                 patterns="1:8", result_json=timing)
    assert_passed(result)
    gemm = json.loads(timing.read_text())["gemms"][0]
    assert gemm["beats"] == 16 * 8 and gemm["pattern"] == "1:8"
    assert gemm["cycles"] <= gemm["beats"] + generated.info["latency_cycles"] + 1
