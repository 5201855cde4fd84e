"""Sparse PE check: random tiles of random length, bubbles (valid low, junk payload) between
beats, full-range values; each published result must equal golden.gemm.sparse_gemm_int for the
tile, appear exactly `latency` cycles after the tile's last beat, and the forwarded outputs must
repeat the inputs one cycle later. The overflow strobe must fire iff golden overflowed."""
import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from ..golden.gemm import sparse_gemm_int
from ..golden.ints import random_ints
from ..golden.nm import compress_nm, random_nm_weights
from .harness import env_float, env_int, manifest, rngs, start
from .payload import pack

TILES = 40


@cocotb.test()
async def pe_accumulates_tiles(dut):
    info = manifest()
    p = info["parameters"]
    n, m, latency = p["n"], p["m"], info["latency_cycles"]
    ports = info["interfaces"]
    rng, prng = rngs()
    bubble = env_float("NMFORGE_STALL", 0.3)
    await start(dut)

    # Build the whole input schedule first: (act, weight, valid, last) per cycle.
    schedule, expected = [], []
    for tile in range(env_int("NMFORGE_TILES", TILES)):
        groups = int(rng.integers(1, 7))
        a = random_ints(rng, (1, groups * m), p["act_width"])
        w = random_nm_weights(rng, groups * m, 1, n, m, p["weight_width"])
        if tile % 3 == 2:  # full-scale corner values
            a[:] = -(1 << (p["act_width"] - 1))
            w[w != 0] = -(1 << (p["weight_width"] - 1))
        values, indices = compress_nm(w, n, m)
        want, overflowed = sparse_gemm_int(a, values, indices, n, m, p["acc_width"], p["overflow"])
        for g in range(groups):
            while prng.random() < bubble:
                schedule.append((random_ints(rng, m, p["act_width"]), None, 0, int(prng.random() < 0.5)))
            weight = {"values": values[g * n:(g + 1) * n, 0]}
            if not p["dense"]:
                weight["indices"] = indices[g * n:(g + 1) * n, 0]
            schedule.append((a[0, g * m:(g + 1) * m], weight, 1, int(g == groups - 1)))
        expected.append((len(schedule) - 1, int(want[0, 0]), overflowed))

    zero_weight = {"values": [0] * n} | ({} if p["dense"] else {"indices": list(range(n))})
    results, overflow_seen, forwarded = [], False, None
    for cycle in range(len(schedule) + latency + 2):
        await RisingEdge(dut.clk)
        if cycle < len(schedule):
            act, weight, valid, last = schedule[cycle]
            dut.act.value = pack(ports["act"]["layout"], act)
            dut.weight.value = pack(ports["weight"]["layout"], weight or zero_weight)
            dut.valid.value, dut.last.value = valid, last
        else:
            dut.valid.value = 0
        await ReadOnly()
        if forwarded is not None:
            assert (int(dut.act_out.value), int(dut.valid_out.value)) == forwarded, f"forwarding broken at cycle {cycle}"
        forwarded = (int(dut.act.value), int(dut.valid.value))
        if dut.result_valid.value == 1:
            results.append((cycle, dut.result.value.to_signed()))
        overflow_seen |= dut.overflow.value == 1

    assert len(results) == len(expected), f"{len(results)} results for {len(expected)} tiles"
    for tile, ((cycle, got), (last_cycle, want, _)) in enumerate(zip(results, expected)):
        assert got == want, f"tile {tile}: result {got}, golden {want}"
        assert cycle - last_cycle == latency, f"tile {tile}: latency {cycle - last_cycle}, manifest {latency}"
    assert overflow_seen == any(o for _, _, o in expected), "overflow strobe disagrees with golden"
