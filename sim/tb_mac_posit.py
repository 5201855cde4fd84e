"""The `posit` PE kind's MAC unit (rtl.mac_posit.PositMac) alone, bit-exact against
golden.posit_mac.posit_mac (exact products, quire, one rounding; the quire's bound).

Tests (NMFORGE_TESTS, comma separated, selects which run; default all three):
  pairs  single-product tiles, one per cycle, back to back: EVERY (activation, weight) code pair
         when there are at most 65,536 of them (posit(8,0) x posit(8,0)), else every pair of
         corner codes (0, NaR, +-maxpos, +-minpos, +-1 and neighbours, ...) plus NMFORGE_PAIRS
         random pairs (posit(16,1)). Pair t sits in lane t mod N, the other lanes hold 0 x 0.
  tiles  NMFORGE_TILES random multi-beat tiles (1 .. 12 beats) with bubbles between beats (valid
         low, junk payload, junk `last`) at NMFORGE_STALL: random codes with some NaR, corner
         codes, cancelling pairs (the sum is exactly 0 or one small survivor), wide dynamic range
         (huge and tiny products), and long runs of +-maxpos^2 products near the quire's bound.
  bound  the quire's carry-guard bound exactly, with the manifest's quire width Q: a tile of
         the most maxpos^2 products that fit (no overflow, result maxpos), one of as many
         -maxpos^2 products as reach -2^(Q-1) (overflow: NaR), and one that passes the bound
         and comes back (overflow although the final sum fits), back to back.
Every result, its latency and its overflow pulse are checked.
"""
import os

import cocotb
import numpy as np

from ..golden import formats as F
from ..golden.posit_mac import posit_mac, quire_lsb_exp
from .harness import env_float, env_int, manifest, rngs, start
from .kinds import PositKind
from .mac_bench import LaneMacModel, check, check_every_pair, drive, expected_of, schedule_tiles

SELECTED = os.environ.get("NMFORGE_TESTS", "pairs,tiles,bound").split(",")


class MacModel(LaneMacModel):
    def __init__(self, info):
        super().__init__(info)
        pe = info["pe"]
        self.fmt = F.get_format(pe["format"])
        self.quire_bits = pe["quire_bits"]

    def golden(self, a, w):
        return posit_mac(self.fmt, a, w, quire=self.quire_bits)

    def junk_codes(self, rng):
        return (rng.integers(0, self.fmt.num_codes, (1, self.n)),
                rng.integers(0, self.fmt.num_codes, (1, self.n)))


@cocotb.test(skip="pairs" not in SELECTED)
async def every_pair(dut):
    model = MacModel(manifest())
    rng, _ = rngs()
    await start(dut)
    await check_every_pair(dut, model, model.fmt, model.fmt, PositKind.corner_codes,
                           lambda fmt, rng, count: PositKind.codes(fmt, rng, count, 0.01), rng,
                           env_int("NMFORGE_PAIRS", 20000))


def maxpos_products(model):
    """maxpos^2 in quire LSB units and how many such products reach 2^(Q-1)."""
    f = model.fmt
    unit = 1 << (2 * (-quire_lsb_exp(f)))  # maxpos^2 = 2^(2 * maxpos_scale), LSB 2^-2*scale
    return unit, (1 << (model.quire_bits - 1)) // unit


def random_tile(model, rng, beats):
    """(B, N) activation and weight codes of one random tile of a random flavour."""
    fmt, n = model.fmt, model.n
    maxpos, neg_maxpos = fmt.nar - 1, fmt.nar + 1
    flavour = int(rng.integers(0, 5))
    if flavour == 0:  # random codes with a few NaR
        return PositKind.codes(fmt, rng, (beats, n), 0.02), PositKind.codes(fmt, rng, (beats, n), 0.02)
    if flavour == 1:  # corners
        corners = PositKind.corner_codes(fmt)
        return rng.choice(corners, (beats, n)), rng.choice(corners, (beats, n))
    a = PositKind.codes(fmt, rng, (beats, n), 0.0)
    w = PositKind.codes(fmt, rng, (beats, n), 0.0)
    if flavour == 2:  # cancelling pairs: half of the products repeat the other half negated
        flat_a, flat_w = a.reshape(-1), w.reshape(-1)
        half = flat_a.size // 2
        flat_a[half:2 * half] = flat_a[:half]
        flat_w[half:2 * half] = (-flat_w[:half]) % fmt.num_codes
        if rng.random() < 0.5:  # and a small survivor
            flat_w[-1] = int(rng.choice([1, 2, fmt.num_codes - 1]))
        return flat_a.reshape(a.shape), flat_w.reshape(w.shape)
    if flavour == 3:  # wide dynamic range: a few huge products among tiny ones
        huge = rng.random((beats, n)) < 0.3
        tiny = rng.choice([1, 2, 3, fmt.num_codes - 1], (beats, n))
        return (np.where(huge, rng.choice([maxpos, neg_maxpos, maxpos - 1], (beats, n)), tiny),
                np.where(huge, maxpos, w))
    # flavour 4: a long run of +-maxpos^2 products, mostly of one sign, near the bound
    _, limit = maxpos_products(model)
    beats = max(1, min(int(limit // n + rng.integers(-3, 4)), 256))
    sign = rng.random((beats, n)) < 0.97
    return np.where(sign, maxpos, neg_maxpos), np.full((beats, n), maxpos)


@cocotb.test(skip="tiles" not in SELECTED)
async def random_tiles(dut):
    model = MacModel(manifest())
    rng, prng = rngs(1)
    stall = env_float("NMFORGE_STALL", 0.3)
    await start(dut)
    tiles = []
    for _ in range(env_int("NMFORGE_TILES", 300)):
        tiles.append(random_tile(model, rng, int(rng.integers(1, 13))))
    schedule, last_cycles = schedule_tiles(model, tiles, rng, prng, stall)
    expected = expected_of(model, tiles)
    results, stray = await drive(dut, schedule, model.latency)
    check(results, stray, expected, last_cycles, model.latency, "random tiles",
          lambda t: f"a {tiles[t][0].tolist()[:8]} w {tiles[t][1].tolist()[:8]}")
    dut._log.info(f"checked {len(tiles)} tiles, {int(expected[1].sum())} with overflow, "
                  f"{int((expected[0] == model.fmt.nar).sum())} NaR")


@cocotb.test(skip="bound" not in SELECTED)
async def quire_bound(dut):
    model = MacModel(manifest())
    fmt, n = model.fmt, model.n
    rng, prng = rngs(2)
    maxpos, neg_maxpos = fmt.nar - 1, fmt.nar + 1
    _, limit = maxpos_products(model)
    await start(dut)

    def run_of(codes_a):
        """One tile whose products are maxpos * codes_a (padded with 0 x 0 to whole beats)."""
        count = len(codes_a)
        beats = -(-count // n)
        a = np.zeros(beats * n, dtype=np.int64)
        w = np.zeros(beats * n, dtype=np.int64)
        a[:count], w[:count] = codes_a, maxpos
        return a.reshape(beats, n), w.reshape(beats, n)

    tiles = [
        run_of([maxpos] * (limit - 1)),                                # the most that fit
        run_of([neg_maxpos] * limit),                                  # exactly -2^(Q-1)
        run_of([maxpos] * limit + [neg_maxpos] * (2 * n)),             # over, then back
        run_of([maxpos] * (limit - 1) + [neg_maxpos]),                 # near, never over
        run_of([neg_maxpos] * (limit - 1)),                            # -(2^(Q-1) - unit)
    ]
    expected = expected_of(model, tiles)
    assert list(expected[1]) == [False, True, True, False, False], expected
    schedule, last_cycles = schedule_tiles(model, tiles, rng, prng, env_float("NMFORGE_STALL", 0.3) / 10)
    results, stray = await drive(dut, schedule, model.latency)
    check(results, stray, expected, last_cycles, model.latency, "quire bound",
          lambda t: f"bound tile {t} of {len(tiles[t][0])} beats")
    dut._log.info(f"checked the quire bound: {limit} maxpos^2 products reach 2^(Q-1), Q = "
                  f"{model.quire_bits}")
