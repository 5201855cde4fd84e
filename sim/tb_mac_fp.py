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

from ..golden import formats as F
from ..golden.fp_mac import fp_mac
from .harness import env_float, env_int, manifest, rngs, start
from .kinds import FpKind
from .mac_bench import LaneMacModel, check, check_every_pair, drive, expected_of, schedule_tiles

SELECTED = os.environ.get("NMFORGE_TESTS", "pairs,tiles").split(",")


class MacModel(LaneMacModel):
    def __init__(self, info):
        super().__init__(info)
        pe = info["pe"]
        self.fa, self.fb = F.get_format(pe["act_format"]), F.get_format(pe["weight_format"])
        self.accumulate, self.lanes, self.acc_bits = pe["accumulate"], pe["lanes"], pe["acc_bits"]

    def golden(self, a, w):
        return fp_mac(self.fa, a, self.fb, w, self.accumulate, self.lanes, self.acc_bits)

    def junk_codes(self, rng):
        return FpKind.codes(self.fa, rng, (1, self.n)), FpKind.codes(self.fb, rng, (1, self.n))


@cocotb.test(skip="pairs" not in SELECTED)
async def every_pair(dut):
    model = MacModel(manifest())
    rng, _ = rngs()
    await start(dut)
    await check_every_pair(dut, model, model.fa, model.fb, FpKind.corner_codes,
                           lambda fmt, rng, count: FpKind.codes(fmt, rng, count, 0.01), rng,
                           env_int("NMFORGE_PAIRS", 20000))


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
    rng, prng = rngs(1)
    stall = env_float("NMFORGE_STALL", 0.3)
    longest = 2 * (model.lanes or 2) + 3
    await start(dut)
    tiles = [random_tile(model, rng, int(rng.integers(1, longest + 1)))
             for _ in range(env_int("NMFORGE_TILES", 300))]
    schedule, last_cycles = schedule_tiles(model, tiles, rng, prng, stall)
    expected = expected_of(model, tiles)
    results, stray = await drive(dut, schedule, model.latency)
    check(results, stray, expected, last_cycles, model.latency, "random tiles",
          lambda t: f"a {tiles[t][0].tolist()} w {tiles[t][1].tolist()}")
    dut._log.info(f"checked {len(tiles)} tiles, {int(expected[1].sum())} with overflow")
