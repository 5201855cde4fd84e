"""The `fp` PE kind's MAC unit (rtl.mac_fp.FpMac) alone, bit-exact against golden.fp_mac.

Tests (NMFORGE_TESTS, comma separated, selects which run; default both):
  pairs  single-product tiles, one per cycle, back to back: EVERY (activation, weight) code pair
         when there are at most 65,536 of them (FP8 x FP8, FP6 x FP6, FP4 x FP4, ...), else
         every pair of corner codes (zeros, +-max, +-min subnormal, +-1, NaN, inf) plus
         NMFORGE_PAIRS random pairs (bf16). Pair t sits in lane t mod N, the other lanes hold
         +0 x +0. Every result, its latency and its overflow pulse are checked.
  tiles  NMFORGE_TILES random multi-beat tiles (1 .. 2L+3 beats, L the fp32 mode's slot count),
         bubbles between beats (valid low, junk payload, junk `last`) at NMFORGE_STALL: random
         codes with some NaN/inf, corner codes, cancelling pairs, wide dynamic range. Every result
         (FP32 bits), its latency and its overflow pulse are checked.
"""
import os

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from ..golden import formats as F
from ..golden.fp_mac import fp_mac
from .harness import env_float, env_int, manifest, rngs, start
from .kinds import FpKind
from .payload import pack

EXHAUSTIVE_LIMIT = 1 << 16
SELECTED = os.environ.get("NMFORGE_TESTS", "pairs,tiles").split(",")


class MacModel:
    def __init__(self, info):
        pe = info["pe"]
        self.n = info["parameters"]["n"]
        self.latency = info["latency_cycles"]
        self.fa, self.fb = F.get_format(pe["act_format"]), F.get_format(pe["weight_format"])
        self.accumulate, self.lanes, self.acc_bits = pe["accumulate"], pe["lanes"], pe["acc_bits"]
        ports = info["interfaces"]
        self.a_layout, self.w_layout = ports["a"]["layout"], ports["w"]["layout"]

    def pack_rows(self, a, w):
        """Packed a/w port values for (T, N) code arrays (checked against payload.pack)."""
        sa, sw = self.a_layout["stride"], self.w_layout["stride"]
        pa = np.zeros(len(a), dtype=object)
        pw = np.zeros(len(w), dtype=object)
        for i in range(self.n):
            pa += a[:, i].astype(object) << (i * sa)
            pw += w[:, i].astype(object) << (i * sw)
        assert pa[0] == pack(self.a_layout, a[0]) and pw[0] == pack(self.w_layout, w[0])
        return [int(x) for x in pa], [int(x) for x in pw]

    def golden(self, a, w):
        return fp_mac(self.fa, a, self.fb, w, self.accumulate, self.lanes, self.acc_bits)


async def drive(dut, schedule, latency):
    """schedule: (a, w, valid, last) per cycle. Returns [(cycle, result, overflow)] for every
    cycle with result_valid, and the cycles where overflow rose without a result."""
    results, stray = [], []
    for cycle in range(len(schedule) + latency + 2):
        await RisingEdge(dut.clk)
        if cycle < len(schedule):
            a, w, valid, last = schedule[cycle]
            dut.a.value, dut.w.value, dut.valid.value, dut.last.value = a, w, valid, last
        else:
            dut.valid.value = 0
        await ReadOnly()
        if dut.result_valid.value == 1:
            results.append((cycle, int(dut.result.value), int(dut.overflow.value)))
        elif dut.overflow.value == 1:
            stray.append(cycle)
    return results, stray


def check(results, stray, expected, last_cycles, latency, what, describe):
    """Compare every published result with (bits, flag) of `expected`."""
    assert not stray, f"{what}: overflow pulsed without a result at cycles {stray[:5]}"
    assert len(results) == len(expected[0]), f"{what}: {len(results)} results for {len(expected[0])} tiles"
    bits, flags = expected
    for t, (cycle, got, flag) in enumerate(results):
        if got != int(bits[t]) or flag != int(flags[t]):
            raise AssertionError(f"{what}: tile {t} ({describe(t)}): result {got:#010x} overflow {flag}, "
                                 f"golden {int(bits[t]):#010x} overflow {int(flags[t])}")
        assert cycle - last_cycles[t] == latency, \
            f"{what}: tile {t}: latency {cycle - last_cycles[t]}, manifest {latency}"


@cocotb.test(skip="pairs" not in SELECTED)
async def every_pair(dut):
    model = MacModel(manifest())
    fa, fb, n = model.fa, model.fb, model.n
    rng, _ = rngs()
    await start(dut)
    if fa.num_codes * fb.num_codes <= EXHAUSTIVE_LIMIT:
        pa, pb = np.meshgrid(np.arange(fa.num_codes), np.arange(fb.num_codes), indexing="ij")
        pa, pb = pa.ravel(), pb.ravel()
        what = f"all {len(pa)} {fa.name} x {fb.name} pairs"
    else:
        ca, cb = FpKind.corner_codes(fa), FpKind.corner_codes(fb)
        pa, pb = (x.ravel() for x in np.meshgrid(ca, cb, indexing="ij"))
        count = env_int("NMFORGE_PAIRS", 20000)
        pa = np.concatenate([pa, FpKind.codes(fa, rng, count, 0.01)])
        pb = np.concatenate([pb, FpKind.codes(fb, rng, count, 0.01)])
        what = f"{len(pa)} corner and random {fa.name} x {fb.name} pairs"
    order = rng.permutation(len(pa))
    pa, pb = pa[order], pb[order]
    a = np.zeros((len(pa), n), dtype=np.int64)
    w = np.zeros((len(pb), n), dtype=np.int64)
    lane = np.arange(len(pa)) % n
    a[np.arange(len(pa)), lane] = pa
    w[np.arange(len(pb)), lane] = pb
    expected = model.golden(a[:, None, :], w[:, None, :])
    packed_a, packed_w = model.pack_rows(a, w)
    schedule = [(x, y, 1, 1) for x, y in zip(packed_a, packed_w)]
    results, stray = await drive(dut, schedule, model.latency)
    check(results, stray, expected, list(range(len(schedule))), model.latency, what,
          lambda t: f"a {int(pa[t]):#x} w {int(pb[t]):#x}")
    dut._log.info(f"checked {what}, one per cycle")


def random_tile(model, rng, beats):
    """(B, N) activation and weight codes of one random tile of a random flavour."""
    fa, fb, n = model.fa, model.fb, model.n
    flavour = int(rng.integers(0, 4))
    if flavour == 0:  # random codes with a few NaN / inf
        return FpKind.codes(fa, rng, (beats, n), 0.02), FpKind.codes(fb, rng, (beats, n), 0.02)
    if flavour == 1:  # corners
        return (rng.choice(FpKind.corner_codes(fa), (beats, n)),
                rng.choice(FpKind.corner_codes(fb), (beats, n)))
    a = FpKind.codes(fa, rng, (beats, n), 0.0)
    w = FpKind.codes(fb, rng, (beats, n), 0.0)
    if flavour == 2:  # cancelling pairs: half of the products repeat the other half negated
        flat_a, flat_w = a.reshape(-1), w.reshape(-1)
        half = flat_a.size // 2
        flat_a[half:2 * half] = flat_a[:half]
        flat_w[half:2 * half] = flat_w[:half] ^ (1 << (fb.width - 1))
        if rng.random() < 0.5:  # and a small survivor
            flat_w[-1] = FpKind.corner_codes(fb)[1]
        return flat_a.reshape(a.shape), flat_w.reshape(w.shape)
    # flavour 3: wide dynamic range: a few huge products among tiny ones
    huge = rng.random((beats, n)) < 0.3
    big_a = FpKind.corner_codes(fa)
    big_a = big_a[np.isfinite(fa.decode(big_a))]
    a = np.where(huge, rng.choice(big_a, (beats, n)), a)
    return a, w


@cocotb.test(skip="tiles" not in SELECTED)
async def random_tiles(dut):
    model = MacModel(manifest())
    n = model.n
    rng, prng = rngs(1)
    stall = env_float("NMFORGE_STALL", 0.3)
    longest = 2 * (model.lanes or 2) + 3
    await start(dut)
    schedule, last_cycles, tiles = [], [], []
    for _ in range(env_int("NMFORGE_TILES", 300)):
        beats = int(rng.integers(1, longest + 1))
        a, w = random_tile(model, rng, beats)
        tiles.append((a, w))
        packed_a, packed_w = model.pack_rows(a, w)
        for b in range(beats):
            while prng.random() < stall:  # a bubble: junk operands and a junk `last`
                ja, jw = model.pack_rows(FpKind.codes(model.fa, rng, (1, n)),
                                         FpKind.codes(model.fb, rng, (1, n)))
                schedule.append((ja[0], jw[0], 0, int(prng.random() < 0.5)))
            schedule.append((packed_a[b], packed_w[b], 1, int(b == beats - 1)))
        last_cycles.append(len(schedule) - 1)
    golden = [model.golden(a, w) for a, w in tiles]
    expected = (np.array([g[0] for g in golden]), np.array([g[1] for g in golden]))
    results, stray = await drive(dut, schedule, model.latency)
    check(results, stray, expected, last_cycles, model.latency, "random tiles",
          lambda t: f"a {tiles[t][0].tolist()} w {tiles[t][1].tolist()}")
    dut._log.info(f"checked {len(tiles)} tiles, {int(expected[1].sum())} with overflow")
