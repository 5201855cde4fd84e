"""Sparse PE check: random tiles of random length, bubbles (valid low, junk payload) between
beats, full-range values; each published result must equal the PE kind's golden model for the
tile (sim.kinds: golden.gemm.sparse_gemm_int for "int", golden.fp_mac for "fp"), appear exactly
`latency` cycles after the tile's last beat, and the forwarded outputs must repeat the inputs one
cycle later. The overflow strobe must fire iff golden overflowed."""
import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from .array_model import column_payload, metadata_fields, row_beats
from .harness import env_float, env_int, manifest, rngs, start
from .kinds import kind_model
from .payload import pack, unpack

TILES = 40


@cocotb.test()
async def pe_accumulates_tiles(dut):
    info = manifest()
    p = info["parameters"]
    n, m, latency = p["n"], p["m"], info["latency_cycles"]
    ports = info["interfaces"]
    kind = kind_model(info)
    metadata = metadata_fields(ports["weight"]["layout"])
    has_act_side = "act_side" in ports
    group = ports["act"]["layout"]["length"]  # activations per beat (a run-time design's window)
    rng, prng = rngs()
    bubble = env_float("NMFORGE_STALL", 0.3)
    await start(dut)

    # Build the whole input schedule first: (act, weight, valid, last) per cycle.
    schedule, expected = [], []
    for tile in range(env_int("NMFORGE_TILES", TILES)):
        if hasattr(kind, "next_pattern"):  # run-time designs: every tile the next pattern
            kind.next_pattern()
        k = kind.k_multiple * int(rng.integers(1, max(4, 6 * m // kind.k_multiple + 1)))
        # every third tile: the kind's corner values (full scale; zeros, specials)
        ops = kind.random_gemm(rng, (1, k, 1), extreme=tile % 3 == 2)
        want, overflowed = kind.golden(ops)
        acts = row_beats(info, ops)[0]  # (beats, group): a kind may lay a K-group out as several beats
        groups = acts.shape[0]
        for g in range(groups):
            while prng.random() < bubble:
                schedule.append((kind.random_acts(rng, group), None, None, 0, int(prng.random() < 0.5)))
            side = None if ops.a_side is None else ops.a_side[0, g]
            schedule.append((acts[g], column_payload(ops, g, 0, n, metadata),
                             side, 1, int(g == groups - 1)))
        expected.append((len(schedule) - 1, int(want[0, 0]), overflowed))

    zero_weight = 0  # raw bits: zero values, all-zero metadata (malformed, but on a bubble)
    results, overflow_seen, forwarded = [], False, None
    for cycle in range(len(schedule) + latency + 2):
        await RisingEdge(dut.clk)
        if cycle < len(schedule):
            act, weight, side, valid, last = schedule[cycle]
            dut.act.value = pack(ports["act"]["layout"], act)
            dut.weight.value = pack(ports["weight"]["layout"], weight or zero_weight)
            if has_act_side:
                dut.act_side.value = pack(ports["act_side"]["layout"], side or 0)
            dut.valid.value, dut.last.value = valid, last
        else:
            dut.valid.value = 0
        await ReadOnly()
        if forwarded is not None:
            assert (int(dut.act_out.value), int(dut.valid_out.value)) == forwarded, f"forwarding broken at cycle {cycle}"
        forwarded = (int(dut.act.value), int(dut.valid.value))
        if dut.result_valid.value == 1:
            results.append((cycle, unpack(ports["result"]["layout"], int(dut.result.value))))
        overflow_seen |= dut.overflow.value == 1

    assert len(results) == len(expected), f"{len(results)} results for {len(expected)} tiles"
    for tile, ((cycle, got), (last_cycle, want, _)) in enumerate(zip(results, expected)):
        assert got == want, f"tile {tile}: result {got}, golden {want}"
        assert cycle - last_cycle == latency, f"tile {tile}: latency {cycle - last_cycle}, manifest {latency}"
    assert overflow_seen == any(o for _, _, o in expected), "overflow strobe disagrees with golden"
