"""Per PE kind, the one place that knows its numbers: random operands and the golden result of a
GEMM, both in port terms (the integers that go on and come off the wires).

`kind_model(info)` reads a manifest and returns the kind's model, with:
  k_multiple: K of a GEMM must be a multiple of this (M, or e.g. an MX block of 32);
  random_gemm(rng, shape, extreme) -> Operands (below) of a (rows, K, cols) GEMM;
  random_acts(rng, count) -> junk activations (for bubbles);
  golden(ops) -> (c, overflowed): the (rows x cols) result port values and whether the
      design's overflow flag must rise.
tb_array and tb_pe use only this interface, so a new PE kind adds one class here.
"""
import dataclasses
import functools
import math

import numpy as np

from ..golden import formats as F
from ..golden.fp_mac import fp_mac
from ..golden.gemm import runtime_gemm_int, sparse_gemm_int
from ..golden.nm import (beat_span, compress_runtime, parse_runtime_pattern, pattern_name,
                         prune_nm)
from ..golden.ints import random_ints
from ..golden.nm import compress_nm, kept_pairs, random_nm_weights
from ..golden.scalable import MODE_CODES as SCALABLE_MODES, sparse_scalable_gemm
from ..golden import bitserial as BS
from ..golden import dot as D
from ..golden.ints import int_range
from .payload import pack, unpack
from ..golden.posit_mac import posit_mac
from ..golden.mx import SCALE_NAN, element_format as mx_element_format, mx_mac
from .mx_corners import AdderTiles, element_units


@dataclasses.dataclass
class Operands:
    """One GEMM in port values, one beat per K-group of M:
    a (rows, K): activation elements; values (K/M*N, cols): weight elements (a struct element
    as its packed bits); indices (K/M*N, cols): each group's N strictly increasing positions;
    a_side (rows, K/M) / w_side (K/M, cols): the MAC's per-beat side values (packed bits), for
    kinds whose MAC has them, else None.
    Run-time designs (RuntimeIntKind): `pattern` names the GEMM's pattern ("2:8", "dense"),
    values and indices are its N':M' compressed form (beat b holds rows b*N..b*N+N-1: N/N'
    groups, golden.nm.compress_runtime) and pattern_ids (beats, cols) is the id on the wire.
    bitmap_flip (K/M, cols): bits XORed into a bitmap design's bitmaps (malformed metadata:
    a popcount other than N), else None."""

    a: np.ndarray
    values: np.ndarray
    indices: np.ndarray
    a_side: np.ndarray | None = None
    w_side: np.ndarray | None = None
    pattern: str | None = None
    pattern_ids: np.ndarray | None = None
    bitmap_flip: np.ndarray | None = None


class IntKind:
    """Kind "int": signed integers, golden.gemm.sparse_gemm_int."""

    beat_groups = 1   # K-groups per beat (kind_model sets the design's)

    def __init__(self, info):
        p = info["parameters"]
        self.n, self.m, self.dense = p["n"], p["m"], p["dense"]
        self.k_multiple = self.m
        self.act_width, self.weight_width = p["act_width"], p["weight_width"]
        self.acc_width, self.overflow = p["acc_width"], p["overflow"]

    def describe(self):
        return f"int {self.overflow}"

    def random_acts(self, rng, count):
        return random_ints(rng, count, self.act_width)

    def random_gemm(self, rng, shape, extreme=False):
        mdim, k, ndim = shape
        a = random_ints(rng, (mdim, k), self.act_width)
        w = random_nm_weights(rng, k, ndim, self.n, self.m, self.weight_width)
        if extreme:  # the corners: full-scale products of both signs, which also overflow small accumulators
            lo, hi = -(1 << (self.act_width - 1)), (1 << (self.act_width - 1)) - 1
            a = rng.choice([lo, hi, -1, 0, 1, lo], size=a.shape)
            w = np.where(w != 0, rng.choice([-(1 << (self.weight_width - 1)),
                                             (1 << (self.weight_width - 1)) - 1], size=w.shape), 0)
        return self.operands(a, w)

    def operands(self, a, w):
        """Operands of the GEMM a @ w (w N:M sparse, dense form)."""
        values, indices = compress_nm(w, self.n, self.m)
        return Operands(a, values, indices)

    def golden(self, ops):
        return sparse_gemm_int(ops.a, ops.values, ops.indices, self.n, self.m, self.acc_width,
                               self.overflow, self.beat_groups)

    def overflow_alone(self, rows, cols, r, c):
        """(ops, beats): a one-beat GEMM in which PE (r, c) alone gets a nonzero beat sum, the
        largest there is (N * the most negative activation * the most negative weight), and
        the fewest repeats of that beat whose sum passes 2^(acc_width-1) - 1."""
        lo_a, lo_w = int_range(self.act_width)[0], int_range(self.weight_width)[0]
        x = np.zeros((rows, self.m), dtype=np.int64)
        x[r] = lo_a
        y = np.zeros((self.m, cols), dtype=np.int64)
        y[:self.n, c] = lo_w
        return self.operands(x, y), -(-(1 << (self.acc_width - 1)) // (self.n * lo_a * lo_w))


class RuntimeIntKind(IntKind):
    """Kind "int" on a run-time design (sparsity.runtime): every GEMM runs one pattern of the
    manifest's table (`parameters.patterns`; the position is the pattern id), laid out as
    golden.nm describes (beats of N/N' groups of M', windows of N*Mmax activations) and checked
    against golden.gemm.runtime_gemm_int. `use_patterns(names)` sets the patterns to cycle
    through, GEMM by GEMM (default: the whole table in id order); `next_pattern()` moves to the
    next one and sets `k_multiple` to its beat span."""

    def __init__(self, info):
        super().__init__(info)
        p = info["parameters"]
        self.names = list(p["patterns"])
        self.table = [parse_runtime_pattern(name, self.n, self.m) for name in self.names]
        self.window = p["window"]
        self.plan, self._turn = list(self.names), 0
        self.name, self.pattern = self.names[0], self.table[0]
        self.k_multiple = beat_span(self.pattern, self.n)

    def use_patterns(self, names):
        """Cycle through `names` (ValueError naming the allowed ones for an unknown name)."""
        names = [pattern_name(parse_runtime_pattern(name, self.n, self.m)) for name in names]
        if not names:
            raise ValueError(f"no patterns given; allowed: {', '.join(self.names)}")
        self.plan, self._turn = names, 0

    def next_pattern(self):
        self.name = self.plan[self._turn % len(self.plan)]
        self._turn += 1
        self.pattern = self.table[self.names.index(self.name)]
        self.k_multiple = beat_span(self.pattern, self.n)
        return self.name

    def describe(self):
        return f"int {self.overflow}, run-time pattern {self.name}"

    def random_gemm(self, rng, shape, extreme=False):
        mdim, k, ndim = shape
        np_, mp = self.pattern
        a = random_ints(rng, (mdim, k), self.act_width)
        w = random_ints(rng, (k, ndim), self.weight_width)
        if np_ < mp:
            w = prune_nm(w, np_, mp)
        if extreme:  # as IntKind: full-scale products of both signs
            lo, hi = -(1 << (self.act_width - 1)), (1 << (self.act_width - 1)) - 1
            a = rng.choice([lo, hi, -1, 0, 1, lo], size=a.shape)
            w = np.where(w != 0, rng.choice([-(1 << (self.weight_width - 1)),
                                             (1 << (self.weight_width - 1)) - 1], size=w.shape), 0)
        return self.operands(a, w)

    def operands(self, a, w):
        """Operands of the GEMM a @ w (w sparse in the current pattern, dense form)."""
        values, indices = compress_runtime(w, self.pattern)
        ids = np.full((values.shape[0] // self.n, w.shape[1]), self.names.index(self.name))
        return Operands(a, values, indices.astype(np.int64), pattern=self.name, pattern_ids=ids)

    def golden(self, ops):
        pattern = parse_runtime_pattern(ops.pattern, self.n, self.m)
        return runtime_gemm_int(ops.a, ops.values, ops.indices, pattern, self.n,
                                self.acc_width, self.overflow)


class FpKind:
    """Kind "fp": format codes in, FP32 bits out, golden.fp_mac over the kept pairs."""

    beat_groups = 1   # K-groups per beat (kind_model sets the design's)

    SPECIAL_RATE = 0.004  # share of NaN / inf codes among random operands

    def __init__(self, info):
        p, pe = info["parameters"], info["pe"]
        self.n, self.m, self.dense = p["n"], p["m"], p["dense"]
        self.k_multiple = self.m
        self.act_format, self.weight_format = pe["act_format"], pe["weight_format"]
        self.accumulate, self.lanes, self.acc_bits = pe["accumulate"], pe["lanes"], pe["acc_bits"]
        self.fa, self.fb = F.get_format(self.act_format), F.get_format(self.weight_format)

    def describe(self):
        return f"fp {self.act_format} x {self.weight_format}, {self.accumulate}"

    @staticmethod
    def codes(fmt, rng, shape, special_rate=SPECIAL_RATE):
        """Random codes of `fmt`: finite ones uniformly, NaN/inf codes at `special_rate`."""
        _, _, special = fmt.exact_value(fmt.codes())
        finite = np.flatnonzero(special == F.FINITE)
        specials = np.flatnonzero(special != F.FINITE)
        out = rng.choice(finite, size=shape)
        if len(specials):
            pick = rng.random(shape) < special_rate
            out = np.where(pick, rng.choice(specials, size=shape), out)
        return out.astype(np.int64)

    @staticmethod
    def corner_codes(fmt):
        """Zero (both signs), +-max, +-min and +-max subnormal, +-min normal, +-1, +-inf and
        some NaN codes."""
        values = fmt.decode(fmt.codes())
        finite = np.isfinite(values)
        mag = np.abs(np.where(finite, values, 0))
        picks = {0, 1 << (fmt.width - 1)}  # +0, -0
        big = np.flatnonzero(finite & (mag == mag[finite].max()))
        tiny = np.flatnonzero(finite & (mag == mag[mag > 0].min()))
        one = np.flatnonzero(values == 1.0) if (values == 1.0).any() else []
        picks |= set(big.tolist()) | set(tiny.tolist()) | set(int(c) for c in one)
        picks |= {(1 << fmt.man_bits) - 1, 1 << fmt.man_bits}  # largest subnormal, smallest normal
        picks |= {c ^ (1 << (fmt.width - 1)) for c in list(picks)}
        picks |= set(np.flatnonzero(np.isinf(values)).tolist())
        for negative in (False, True):  # the lowest and highest NaN code of each sign
            nans = np.flatnonzero(np.isnan(values) & ((fmt.codes() >> (fmt.width - 1)) == negative))
            picks |= {int(nans[0]), int(nans[-1])} if len(nans) else set()
        return np.array(sorted(picks), dtype=np.int64)

    def random_acts(self, rng, count):
        return self.codes(self.fa, rng, count)

    def overflow_alone(self, rows, cols, r, c):
        """(ops, beats) as IntKind.overflow_alone for the exact accumulation: PE (r, c) alone
        sums N products of the two formats' largest finite values per beat, for the fewest
        beats that leave the acc_bits-bit accumulator's range (the tile is poisoned: NaN and
        the flag). None for fp32 accumulation, whose overflow the regression's GEMMs reach
        only where the formats' products can (not from FP8)."""
        if self.accumulate != "exact":
            return None
        big = self._largest
        units = self._units(*big)
        a = np.zeros((rows, self.m), dtype=np.int64)
        a[r] = big[0]
        values = np.zeros((self.n, cols), dtype=np.int64)
        values[:, c] = big[1]
        indices = np.tile(np.arange(self.n, dtype=np.int64)[:, None], (1, cols))
        return Operands(a, values, indices), ((1 << (self.acc_bits - 1)) - 1) // (self.n * units) + 1

    def _units(self, a_code, w_code):
        """The exact product of two codes in accumulator units (2^(lsb_exp(a) + lsb_exp(b)))."""
        mant, exp, _ = F.exact_product(self.fa, np.array([a_code]), self.fb, np.array([w_code]))
        return int(mant[0]) << int(exp[0] - self.fa.lsb_exp - self.fb.lsb_exp)

    @functools.cached_property
    def _powers(self):
        """Per format (activation, weight): {e: the code of 2^e} over its finite codes."""
        found = []
        for fmt in (self.fa, self.fb):
            values = fmt.decode(fmt.codes())
            codes = np.flatnonzero(np.isfinite(values) & (values > 0))
            mant, exp = np.frexp(values[codes])
            found.append({int(e) - 1: int(c) for c, m, e in zip(codes[::-1], mant[::-1], exp[::-1])
                          if m == 0.5})
        return found

    @functools.cached_property
    def _largest(self):
        """The codes (a, w) of each format's largest finite value."""
        return tuple(int(np.nanargmax(np.where(np.isfinite(v), v, np.nan)))
                     for v in (self.fa.decode(self.fa.codes()), self.fb.decode(self.fb.codes())))

    def _power_pair(self, j, negative=False):
        """Codes (a, w) whose product is exactly +-2^j accumulator units, or None."""
        powers_a, powers_b = self._powers
        for p, code_a in powers_a.items():
            q = j + self.fa.lsb_exp + self.fb.lsb_exp - p
            if q in powers_b:
                return code_a ^ (int(negative) << (self.fa.width - 1)), powers_b[q]
        return None

    def _beat(self, rows, cols, lanes, at=None):
        """One beat of a one-group tile: the (a, w) code pairs `lanes` in lanes 0.. of every PE,
        or of PE `at` = (r, c) alone (the other rows' activations and columns' weights zero)."""
        a = np.zeros((rows, self.m), dtype=np.int64)
        values = np.zeros((self.n, cols), dtype=np.int64)
        r, c = (slice(None), slice(None)) if at is None else at
        for lane, (x, y) in enumerate(lanes):
            a[r, lane], values[lane, c] = x, y
        indices = np.tile(np.arange(self.n, dtype=np.int64)[:, None], (1, cols))
        return Operands(a, values, indices)

    def _terms(self, units):
        """Code pairs whose exact products sum to `units` (> 0) accumulator units, as
        [((a, w), repeats)]: the largest product as often as it fits, the rest bit by bit in
        power-of-two products (a bit above the largest one as repeats of that one)."""
        big = self._largest
        top = max(j for j in range(self.acc_bits) if self._power_pair(j))
        repeats, rest = divmod(units, self._units(*big))
        terms = [(big, repeats)] if repeats else []
        for j in range(rest.bit_length()):
            if rest >> j & 1:
                terms.append((self._power_pair(j), 1) if j <= top else
                             (self._power_pair(top), 1 << (j - top)))
        return terms

    def _segments(self, rows, cols, terms, negative=False, at=None):
        """`terms` as beats of N lanes: [(Operands of one beat, repeats)] for every PE or PE `at`."""
        sign = int(negative) << (self.fa.width - 1)
        out = []
        for (a, w), repeats in terms:
            full, left = divmod(repeats, self.n)
            if full:
                out.append((self._beat(rows, cols, [(a ^ sign, w)] * self.n, at), full))
            if left:
                out.append((self._beat(rows, cols, [(a ^ sign, w)] * left, at), 1))
        return out

    def rounding_tiles(self, rows, cols, budget):
        """Exact accumulation: tiles whose sums need FP32 rounding at each leading-bit position L
        the accumulator holds (24 .. acc_bits-2), as [(Operands of one beat, repeats)] per
        tile, at most `budget` beats in all. In each tile every PE gets the bulk
        2^(L+1) - 2^(L-22) (bits L..L-22 set: every kept bit but the FP32 LSB, bit L-23), then
        beats of its own. Two passes over L (odd L negates every product: the sign-magnitude
        path):
          1. PE 0 the guard bit 2^(L-24), an exact tie with an even LSB (rounds down), PE 1 the
             LSB and the guard (a tie with an odd LSB: up), the others the guard and one sticky
             bit 2^i, i spread over 0..L-25, added (up) or subtracted (down);
          2. per PE in turn (every other L, and all at the top L) the even tie, which a kept
             bit wrongly taken as sticky turns up, else the tie and one sticky bit at a
             position that moves with L and the PE.
        Random GEMMs do not reach such sums: a rounding or sticky-bit fault at a high bit shows
        only here, and only in the PE whose sum meets it."""
        if self.accumulate != "exact":
            return []
        pes = [(r, c) for r in range(rows) for c in range(cols)]
        top = self.acc_bits - 2
        tiles, spent = [], 0
        for rotated in (False, True):
            for lead in range(24, top + 1):
                neg = lead % 2 == 1
                tile = self._segments(rows, cols, self._terms((1 << (lead + 1)) - (1 << (lead - 22))), neg)
                for q, pe in enumerate(pes):
                    own = [(1 << (lead - 24), neg)]
                    if not rotated and q == 1:
                        own.append((1 << (lead - 23), neg))
                    elif not rotated and q > 1 and lead > 24:
                        own.append((1 << ((q - 2) * (lead - 25) // max(1, len(pes) - 3)), neg ^ (q % 2 == 1)))
                    elif rotated and (q + lead) % 2 == 1 and lead > 24 and lead < top:
                        own.append((1 << ((7 * lead + 5 * q) % (lead - 24)), neg))
                    for units, negative in own:
                        tile += self._segments(rows, cols, self._terms(units), negative, at=pe)
                beats = sum(count for _, count in tile)
                if spent + beats > budget:
                    return tiles
                spent += beats
                tiles.append(tile)
        return tiles

    def special_tiles(self, rows, cols):
        """Tiles of three beats in which every PE meets a special product in the first beat only
        (the tile must remember it until its `last` beat): a NaN, +inf and -inf activation
        where the format has them, inf * 0, and +inf then -inf. [(Operands of one beat, repeats)]."""
        va = self.fa.decode(self.fa.codes())
        one_a = int(np.flatnonzero(va == 1.0)[0])
        one_w = int(np.flatnonzero(self.fb.decode(self.fb.codes()) == 1.0)[0])
        ones = (self._beat(rows, cols, [(one_a, one_w)]), 1)
        first = {"nan": np.flatnonzero(np.isnan(va)), "+inf": np.flatnonzero(np.isposinf(va)),
                 "-inf": np.flatnonzero(np.isneginf(va))}
        tiles = [[(self._beat(rows, cols, [(int(codes[0]), one_w)]), 1), ones, ones]
                 for codes in first.values() if len(codes)]
        if len(first["+inf"]) and len(first["-inf"]):
            tiles.append([(self._beat(rows, cols, [(int(first["+inf"][0]), 0)]), 1), ones, ones])
            tiles.append([(self._beat(rows, cols, [(int(first["+inf"][0]), one_w)]), 1),
                          (self._beat(rows, cols, [(int(first["-inf"][0]), one_w)]), 1), ones])
        return tiles

    def bound_tile(self, rows, cols):
        """Exact accumulation: one tile in which every PE leaves the accumulator's range before
        its last beat (the left half of the columns upwards, the right half downwards), the
        last beat adding zero: the tile-sticky bound must poison every result (NaN, flag).
        [(Operands of one beat, repeats)], or None for fp32 accumulation."""
        if self.accumulate != "exact":
            return None
        ops, count = self.overflow_alone(rows, cols, 0, 0)
        block = self._beat(rows, cols, [(int(ops.a[0, 0]), int(ops.values[0, 0]))] * self.n)
        block.values[:, cols // 2:] ^= 1 << (self.fb.width - 1)
        return [(block, count), (self._beat(rows, cols, []), 1)]

    def random_gemm(self, rng, shape, extreme=False):
        mdim, k, ndim = shape
        groups = k // self.m
        if extreme:
            a = self.corner_mix(self.fa, rng, (mdim, k))
            values = self.corner_mix(self.fb, rng, (groups * self.n, ndim))
        else:
            a = self.codes(self.fa, rng, (mdim, k))
            values = self.codes(self.fb, rng, (groups * self.n, ndim))
        indices = np.array([[sorted(rng.choice(self.m, self.n, replace=False)) for _ in range(ndim)]
                            for _ in range(groups)])  # (groups, ndim, n)
        indices = indices.transpose(0, 2, 1).reshape(groups * self.n, ndim)
        if extreme:  # cancellation: every odd group repeats the previous one with negated weights
            for g in range(1, groups, 2):
                a[:, g * self.m:(g + 1) * self.m] = a[:, (g - 1) * self.m:g * self.m]
                rows = slice(g * self.n, (g + 1) * self.n)
                before = slice((g - 1) * self.n, g * self.n)
                indices[rows] = indices[before]
                keep = rng.random(values[rows].shape) < 0.75  # a few stay: near-cancellation
                flipped = values[before] ^ (1 << (self.fb.width - 1))
                values[rows] = np.where(keep, flipped, values[rows])
        return Operands(a, values, indices)

    @staticmethod
    def corner_mix(fmt, rng, shape):
        """Corner-heavy codes where NaN / inf stay a minority (2 %): 35 % subnormals and zeros,
        20 % the top binade (large products, whose sums need rounding: ties and sticky bits
        against the small ones), 15 % FpKind.corner_codes' finite ones, 28 % random finite
        codes with a short mantissa (exact halves: ties to even)."""
        codes = fmt.codes()
        values = fmt.decode(codes)
        finite = np.isfinite(values)
        special = np.flatnonzero(~finite)
        sub = np.flatnonzero(finite & (((codes >> fmt.man_bits) & ((1 << fmt.exp_bits) - 1)) == 0))
        mag = np.abs(np.where(finite, values, 0))
        top = np.flatnonzero(finite & (mag >= mag[finite].max() / 2))
        corners = FpKind.corner_codes(fmt)
        corners = corners[np.isfinite(fmt.decode(corners))]
        short = np.flatnonzero(finite & ((codes & ((1 << max(fmt.man_bits - 1, 0)) - 1)) == 0))
        pools = [sub, top, corners, short, special if len(special) else corners]
        pick = rng.choice(len(pools), size=shape, p=[0.35, 0.20, 0.15, 0.28, 0.02])
        out = np.zeros(shape, dtype=np.int64)
        for number, pool in enumerate(pools):
            where = pick == number
            out[where] = rng.choice(pool, size=int(where.sum()))
        return out

    def golden(self, ops):
        """Per output (i, j): the tile of beats g = 0..K/M-1, lanes l = 0..N-1 with the pair
        (a[i, g*M + indices[g*N+l, j]], values[g*N+l, j])."""
        acts, weights = (beats_of(x, self.beat_groups)
                         for x in kept_pairs(ops.a, ops.values, ops.indices, self.n, self.m))
        bits, flags = fp_mac(self.fa, acts, self.fb, weights, self.accumulate, self.lanes,
                             self.acc_bits)
        return bits.astype(np.int64), bool(flags.any())


class PositKind:
    """Kind "posit": posit codes in and out (both operands and the result in pe.format),
    golden.posit_mac (exact products, quire, one rounding) over the kept pairs of each tile."""

    NAR_RATE = 0.004  # share of NaR codes among random operands

    def __init__(self, info):
        p, pe = info["parameters"], info["pe"]
        self.n, self.m, self.dense = p["n"], p["m"], p["dense"]
        self.k_multiple = self.m
        self.format, self.quire_bits = pe["format"], pe["quire_bits"]
        self.fmt = F.get_format(self.format)

    def describe(self):
        return f"posit {self.format}, quire {self.quire_bits} bits"

    @staticmethod
    def codes(fmt, rng, shape, nar_rate=NAR_RATE):
        """Random codes of `fmt`: every non-NaR code uniformly, NaR at `nar_rate`."""
        out = rng.integers(0, fmt.num_codes - 1, size=shape)
        out = np.where(out >= fmt.nar, out + 1, out)  # skip NaR
        return np.where(rng.random(shape) < nar_rate, fmt.nar, out).astype(np.int64)

    @staticmethod
    def corner_codes(fmt):
        """0, NaR, +-maxpos, +-minpos, +-1 and its neighbours, +-2, +-1/2, the codes next to
        +-maxpos and +-minpos."""
        top = fmt.nar
        picks = {0, top, top - 1, 1, top - 2, 2, top >> 1, (top >> 1) - 1, (top >> 1) + 1}
        picks |= {int(c) for c in fmt.encode([2.0, 0.5])}
        picks |= {(-c) % fmt.num_codes for c in list(picks)}
        return np.array(sorted(picks), dtype=np.int64)

    def random_acts(self, rng, count):
        return self.codes(self.fmt, rng, count)

    def random_gemm(self, rng, shape, extreme=False):
        mdim, k, ndim = shape
        groups = k // self.m
        if extreme:  # corners only: zero, NaR, maxpos, minpos, +-1, ...
            a = rng.choice(self.corner_codes(self.fmt), size=(mdim, k))
            values = rng.choice(self.corner_codes(self.fmt), size=(groups * self.n, ndim))
        else:
            a = self.codes(self.fmt, rng, (mdim, k))
            values = self.codes(self.fmt, rng, (groups * self.n, ndim))
        indices = np.array([[sorted(rng.choice(self.m, self.n, replace=False)) for _ in range(ndim)]
                            for _ in range(groups)])  # (groups, ndim, n)
        indices = indices.transpose(0, 2, 1).reshape(groups * self.n, ndim)
        return Operands(a, values, indices)

    def golden(self, ops):
        """Per output (i, j): the tile of beats g = 0..K/M-1, lanes l = 0..N-1 with the pair
        (a[i, g*M + indices[g*N+l, j]], values[g*N+l, j]); a pruned weight takes no part."""
        a, values, indices = (np.asarray(x, dtype=np.int64) for x in (ops.a, ops.values, ops.indices))
        groups = values.shape[0] // self.n
        idx = indices.reshape(groups, self.n, -1)                     # (G, N, cols)
        pos = np.arange(groups)[:, None, None] * self.m + idx          # (G, N, cols)
        acts = a[:, pos].transpose(0, 3, 1, 2)                         # (rows, cols, G, N)
        weights = values.reshape(groups, self.n, -1).transpose(2, 0, 1)  # (cols, G, N)
        weights = np.broadcast_to(weights, acts.shape)
        acts, weights = beats_of(acts, self.beat_groups), beats_of(weights, self.beat_groups)
        codes, flags = posit_mac(self.fmt, acts, weights, quire=self.quire_bits)
        return codes.astype(np.int64), bool(flags.any())


def side_layout(info, name="w_side"):
    """The manifest's layout of the MAC unit's side struct `name` ("w_side" / "a_side"), for a
    manifest of block "mac", "pe" or "array"."""
    ports = info["interfaces"]
    if name in ports:  # the MAC unit itself
        return ports[name]["layout"]
    port, field = ("weight", "side") if name == "w_side" else ("act", "side")
    if port == "act" and "act_side" in ports:  # a PE
        return ports["act_side"]["layout"]
    layout = ports[port]["payload"] if ports[port]["kind"] == "stream" else ports[port]["layout"]
    if layout["kind"] == "array":
        layout = layout["element"]
    layout = layout["fields"][field]["layout"]
    return layout["element"] if layout["kind"] == "array" else layout


def random_indices(rng, groups, n, m, cols):
    """Random N:M index metadata (groups*N, cols): N strictly increasing positions per group."""
    indices = np.array([[sorted(rng.choice(m, n, replace=False)) for _ in range(cols)]
                        for _ in range(groups)])  # (groups, cols, n)
    return indices.transpose(0, 2, 1).reshape(groups * n, cols)


class MpgemmKind:
    """Kind "mpgemm": low-bit weights times INT8/INT16 activations, per-group scale and zero
    point, dyadic requantized output; golden.dot.mpgemm_gemm. K is a multiple of group_size.
    `w_side` per beat and column: the beat's group scale and zero point; the tile's last beat
    also carries the output stage's mult and shift (other beats carry junk there)."""

    def __init__(self, info):
        p, pe = info["parameters"], info["pe"]
        self.n, self.m = p["n"], p["m"]
        self.act_format, self.weight_format = pe["act_format"], pe["weight_format"]
        self.group_size, self.out_width = pe["group_size"], pe["out_width"]
        self.acc_bits = pe["acc_bits"]
        self.k_multiple = self.group_size
        self.fa, self.fw = F.get_format(self.act_format), F.get_format(self.weight_format)
        self.side = side_layout(info)

    def describe(self):
        return (f"mpgemm {self.weight_format} x {self.act_format}, groups of {self.group_size}, "
                f"INT{self.out_width} out")

    def random_acts(self, rng, count):
        return rng.integers(self.fa.lo, self.fa.hi, size=count, endpoint=True)

    def _gemm(self, ops_a, values, indices, scales, zeros, mult, shift):
        return D.mpgemm_gemm(ops_a, values, indices, self.n, self.m, scales, zeros, mult, shift,
                             self.group_size, self.out_width, self.acc_bits,
                             self.weight_format, self.act_format)

    def random_gemm(self, rng, shape, extreme=False):
        rows, k, cols = shape
        groups, quant = k // self.m, k // self.group_size
        alo, ahi, wlo, whi = self.fa.lo, self.fa.hi, self.fw.lo, self.fw.hi
        if extreme:  # the corners: full-scale operands, scales and zero points
            a = rng.choice([alo, ahi, alo, -1, 0, 1], size=(rows, k))
            values = rng.choice([wlo, whi, whi, 0], size=(groups * self.n, cols))
            scales = rng.choice([-(1 << 15), (1 << 15) - 1, 1, -1, 0], size=(quant, cols))
            zeros = rng.choice([wlo, whi, 0], size=(quant, cols))
        else:
            a = rng.integers(alo, ahi, size=(rows, k), endpoint=True)
            values = rng.integers(wlo, whi, size=(groups * self.n, cols), endpoint=True)
            scales = rng.integers(-(1 << 15), 1 << 15, size=(quant, cols))
            zeros = rng.integers(wlo, whi, size=(quant, cols), endpoint=True)
        indices = random_indices(rng, groups, self.n, self.m, cols)
        # The output stage: per column, a shift that brings the largest |acc * mult| to about
        # out_width bits, so outputs land in range and at its edges (some saturate).
        _, acc, _ = self._gemm(a, values, indices, scales, zeros, np.ones(cols, np.int64),
                               np.zeros(cols, np.int64))
        mult = rng.integers(1, 1 << 16, size=cols)
        shift = np.zeros(cols, dtype=np.int64)
        for j in range(cols):
            peak = int(np.abs(acc[:, j]).max()) * int(mult[j])
            shift[j] = min(63, max(0, peak.bit_length() - self.out_width + int(rng.integers(-1, 3))))
        edge = rng.random(cols) < (0.5 if extreme else 0.1)
        mult = np.where(edge, rng.choice([0, 1, (1 << 16) - 1], size=cols), mult)
        shift = np.where(edge, rng.choice([0, 1, 63], size=cols), shift)
        side = np.zeros((groups, cols), dtype=np.int64)
        beats = self.group_size // self.m
        for g in range(groups):
            q, last = g // beats, g == groups - 1
            for j in range(cols):
                side[g, j] = pack(self.side, {
                    "scale": int(scales[q, j]), "zero": int(zeros[q, j]),
                    "mult": int(mult[j]) if last else int(rng.integers(0, 1 << 16)),
                    "shift": int(shift[j]) if last else int(rng.integers(0, 64))})
        return Operands(a, values, indices, None, side)

    def golden(self, ops):
        """The group's scale and zero point are those of its last beat (the hardware's); a group
        whose beats disagree on them is malformed (overflow); mult and shift come from the
        tile's last beat."""
        fields = [[unpack(self.side, int(x)) for x in row] for row in np.asarray(ops.w_side)]
        beats = self.group_size // self.m
        quant = len(fields) // beats

        def table(name, rows):
            return np.array([[f[name] for f in fields[r]] for r in rows], dtype=np.int64)

        ends = [q * beats + beats - 1 for q in range(quant)]
        scales, zeros = table("scale", ends), table("zero", ends)
        mixed = any(table(name, [q * beats + b for q in range(quant)]).tolist()
                    != table(name, ends).tolist()
                    for name in ("scale", "zero") for b in range(beats))
        y, _, overflowed = self._gemm(ops.a, ops.values, ops.indices, scales, zeros,
                                      table("mult", [-1])[0], table("shift", [-1])[0])
        return y, overflowed or mixed


class BitserialKind:
    """Kind "bitserial": one weight bit-plane per beat; operands in beat space (a GEMM of P-bit
    weights becomes P beats per K-group, golden.bitserial.plane_beats), P drawn per GEMM: the
    first two GEMMs of a run use P = 1 and P = weight_width (in random order), later ones a
    random P in 1..weight_width, so back-to-back GEMMs switch the run-time precision. A
    dot-product PE's beat (`beat_groups` K-groups) is one plane of its groups
    (golden.bitserial.plane_beats with `block`)."""

    beat_groups = 1   # K-groups per beat (kind_model sets the design's)

    def __init__(self, info):
        p, pe = info["parameters"], info["pe"]
        self.n, self.m = p["n"], p["m"]
        self.k_multiple = self.m
        self.act_width, self.weight_width = pe["act_width"], pe["weight_width"]
        self.acc_width, self.overflow = pe["acc_width"], pe["overflow"]
        self.side = side_layout(info)
        self.precision, self._plan = None, None

    def describe(self):
        return (f"bitserial INT{self.act_width} x {self.precision}-bit weights "
                f"(1..{self.weight_width} at run time), {self.overflow}")

    def random_acts(self, rng, count):
        return random_ints(rng, count, self.act_width)

    def next_precision(self, rng):
        if self._plan is None:
            self._plan = [int(p) for p in rng.permutation(sorted({1, self.weight_width}))]
        return self._plan.pop() if self._plan else int(rng.integers(1, self.weight_width + 1))

    def random_gemm(self, rng, shape, extreme=False):
        rows, k, cols = shape
        groups = k // self.m
        precision = self.precision = self.next_precision(rng)
        lo, hi = int_range(precision)
        if extreme:  # full-scale activations and the most negative / positive weights: mixed,
            # or all products at the largest positive or negative value (fills the accumulator)
            alo, ahi = int_range(self.act_width)
            corner = int(rng.integers(3))
            a = (rng.choice([alo, ahi, alo, -1, 0, 1], size=(rows, k)) if corner == 0
                 else np.full((rows, k), alo if corner == 1 else ahi))
            values = (rng.choice([lo, hi, lo, -1, 0], size=(groups * self.n, cols)) if corner == 0
                      else np.full((groups * self.n, cols), lo))
        else:
            a = random_ints(rng, (rows, k), self.act_width)
            values = rng.integers(lo, hi, size=(groups * self.n, cols), endpoint=True)
        indices = random_indices(rng, groups, self.n, self.m, cols)
        a_beats, bits, beat_indices, planes, msb = BS.plane_beats(a, values, indices, self.n,
                                                                  precision, self.beat_groups)
        side = np.array([pack(self.side, {"plane": int(p), "msb": int(s)})
                         for p, s in zip(planes, msb)], dtype=np.int64)
        return Operands(a_beats, bits, beat_indices, None,
                        np.repeat(side[:, None], cols, axis=1))

    def planes(self, ops):
        """(planes, msb), each (beats, cols): the plane index and sign flag of every beat's
        `w_side`."""
        fields = [[unpack(self.side, int(x)) for x in row] for row in np.asarray(ops.w_side)]
        planes = np.array([[f["plane"] for f in row] for row in fields], dtype=np.int64)
        msb = np.array([[f["msb"] for f in row] for row in fields], dtype=np.int64)
        return planes, msb

    def golden(self, ops):
        planes, msb = self.planes(ops)
        return BS.bitserial_gemm(ops.a, ops.values, ops.indices, planes, msb, self.n, self.m,
                                 self.acc_width, self.overflow, self.weight_width,
                                 self.beat_groups)


class MxKind:
    """Kind "mx": MX element codes, the E8M0 block scales as side values (`a_side` per row and
    beat, `w_side` per column and beat), FP32 bits out; golden.mx.mx_mac over each tile's kept
    pairs. K is a multiple of the 32-element block; scales are constant within a block."""

    beat_groups = 1   # K-groups per beat (kind_model sets the design's)

    SPECIAL_RATE = 0.002  # share of NaN / inf codes among random operands (per element)

    def __init__(self, info):
        p, pe = info["parameters"], info["pe"]
        self.n, self.m = p["n"], p["m"]
        self.format, self.lanes, self.block_size = pe["format"], pe["lanes"], pe["block_size"]
        self.k_multiple = self.block_size
        self.per_block = self.block_size // self.m
        self.fmt = mx_element_format(self.format)

    def describe(self):
        return f"mx {self.format}, blocks of {self.block_size}, {self.lanes} FP32 partial sums"

    @staticmethod
    def codes(fmt, rng, shape, special_rate=SPECIAL_RATE):
        """Random element codes: finite ones uniformly, NaN / inf codes at `special_rate`."""
        return FpKind.codes(fmt, rng, shape, special_rate)

    @staticmethod
    def corner_codes(fmt):
        """FP elements: FpKind.corner_codes (zeros, +-max, +-min subnormal, +-min normal, +-1,
        inf, NaN); MXINT8: 0, +-1 LSB, +-1.0, the extremes -2 and 127/64, and their neighbours."""
        if fmt.kind == "int":
            return np.array([0x00, 0x01, 0xFF, 0x40, 0xC0, 0x7F, 0x80, 0x81, 0x7E], dtype=np.int64)
        return FpKind.corner_codes(fmt)

    @staticmethod
    def random_scales(rng, shape, extreme=False):
        """E8M0 codes: near 1.0 (2^-15 .. 2^15); `extreme`: also 0, 1, 253, 254 and NaN (0xFF)."""
        scales = rng.integers(112, 143, size=shape)
        if extreme:
            corners = rng.choice(np.array([0, 1, 127, 253, 254, 0xFF]), size=shape)
            scales = np.where(rng.random(shape) < 0.4, corners, scales)
        return scales.astype(np.int64)

    def random_acts(self, rng, count):
        return self.codes(self.fmt, rng, count)

    def overflow_alone(self, rows, cols, r, c):
        """(ops, beats) as IntKind.overflow_alone: one block in which PE (r, c) alone sums N
        products of the largest element per beat at the largest scales (2^127 each): its scaled
        sum overflows FP32; every other PE sums zeros. `ops` is one beat (the block's last beat
        samples the scales), repeated for the block's 32 / M beats."""
        units = element_units(self.fmt)
        big = max(units, key=units.get)
        a = np.zeros((rows, self.m), dtype=np.int64)
        a[r] = big
        values = np.zeros((self.n, cols), dtype=np.int64)
        values[:, c] = big
        indices = np.tile(np.arange(self.n, dtype=np.int64)[:, None], (1, cols))
        top = SCALE_NAN - 1
        return Operands(a, values, indices, a_side=np.full((rows, 1), top, dtype=np.int64),
                        w_side=np.full((1, cols), top, dtype=np.int64)), self.per_block

    def rounding_gemms(self, rows, cols):
        """One-tile GEMMs that put each FP32 adder of the MAC at a tie or a deciding sticky bit
        (sim.mx_corners): [(description, Operands)]."""
        tiles = AdderTiles(self.fmt, self.n, self.m, self.lanes, self.block_size)
        return [(what, Operands(**fields)) for what, fields, _ in tiles.tiles(rows, cols)]

    def random_gemm(self, rng, shape, extreme=False):
        rows, k, cols = shape
        groups, blocks = k // self.m, k // self.block_size
        if extreme:  # corners (finite), a few specials, scales at the extremes
            corners = self.corner_codes(self.fmt)
            finite = corners[np.isfinite(self.fmt.decode(corners))]
            a = rng.choice(finite, size=(rows, k))
            values = rng.choice(finite, size=(groups * self.n, cols))
            a = np.where(rng.random(a.shape) < 0.01, rng.choice(corners, size=a.shape), a)
        else:
            a = self.codes(self.fmt, rng, (rows, k))
            values = self.codes(self.fmt, rng, (groups * self.n, cols))
        a_scale = self.random_scales(rng, (rows, blocks), extreme)
        w_scale = self.random_scales(rng, (blocks, cols), extreme)
        return Operands(a, values, random_indices(rng, groups, self.n, self.m, cols),
                        a_side=np.repeat(a_scale, self.per_block, axis=1),
                        w_side=np.repeat(w_scale, self.per_block, axis=0))

    def golden(self, ops):
        """Per output (i, j): the beats g = 0..K/M-1 with the pairs (a[i, g*M + indices[g*N+l, j]],
        values[g*N+l, j]) and the scales a_side[i, g], w_side[g, j]."""
        a, values, indices = (np.asarray(x, dtype=np.int64) for x in (ops.a, ops.values, ops.indices))
        groups = values.shape[0] // self.n
        pos = np.arange(groups)[:, None, None] * self.m + indices.reshape(groups, self.n, -1)
        acts = a[:, pos].transpose(0, 3, 1, 2)                           # (rows, cols, G, N)
        weights = np.broadcast_to(values.reshape(groups, self.n, -1).transpose(2, 0, 1), acts.shape)
        a_side = np.asarray(ops.a_side, dtype=np.int64)[:, None, :]      # (rows, 1, G)
        w_side = np.asarray(ops.w_side, dtype=np.int64).T[None, :, :]    # (1, cols, G)
        a_side, w_side = np.broadcast_arrays(a_side, w_side)
        step = self.beat_groups   # a beat's groups share one block's scales
        acts, weights = beats_of(acts, step), beats_of(weights, step)
        bits, flags = mx_mac(self.format, acts, weights, a_side[..., ::step], w_side[..., ::step],
                             self.m * step, self.lanes)
        return bits.astype(np.int64), bool(flags.any())


class ScalableKind:
    """Kind "scalable": 8-bit activation words, weight words with a per-lane mode (packed
    bits | mode << 8, rtl.mac_scalable.WEIGHT_ELEMENT), golden.scalable."""

    # corner words: full-scale bytes, nibbles and 2-bit fields of both signs
    CORNER_WORDS = (0x00, 0x7F, 0x80, 0xFF, 0x01, 0x77, 0x88, 0x87, 0x78, 0x55, 0xAA)

    def __init__(self, info):
        p = info["parameters"]
        self.n, self.m, self.dense = p["n"], p["m"], p["dense"]
        self.k_multiple = self.m
        self.acc_width, self.overflow = p["acc_width"], p["overflow"]

    def describe(self):
        return f"scalable {self.overflow}"

    def random_acts(self, rng, count):
        return rng.integers(0, 256, size=count)

    def random_gemm(self, rng, shape, extreme=False):
        mdim, k, ndim = shape
        groups = k // self.m
        words = (lambda size: rng.choice(self.CORNER_WORDS, size=size)) if extreme else \
            (lambda size: rng.integers(0, 256, size=size))
        a = words((mdim, k))
        w = words((groups * self.n, ndim))
        modes = rng.integers(0, len(SCALABLE_MODES), size=w.shape)
        indices = random_indices(rng, groups, self.n, self.m, ndim)
        return Operands(a, w | modes << 8, indices)

    def golden(self, ops):
        values = np.asarray(ops.values, dtype=np.int64)
        return sparse_scalable_gemm(ops.a, values & 0xFF, values >> 8, ops.indices, self.n,
                                    self.m, self.acc_width, self.overflow,
                                    beat_groups=self.beat_groups)


KINDS = {"int": IntKind, "fp": FpKind, "scalable": ScalableKind, "mpgemm": MpgemmKind, "bitserial": BitserialKind, "posit": PositKind, "mx": MxKind}


def beats_of(pairs, groups):
    """(..., G, N) per-group operands as (..., G/groups, groups*N): a beat of `groups`
    consecutive groups (the dot-product array's PEs), group 0's lanes first."""
    if groups == 1:
        return pairs
    lead, count, n = pairs.shape[:-2], pairs.shape[-2], pairs.shape[-1]
    return pairs.reshape(*lead, count // groups, groups * n)


def kind_model(info):
    """The model of the manifest's PE kind (RuntimeIntKind for a run-time int design), with
    `beat_groups` (K-groups per beat: the golden sums a beat's products in one tree) and
    `k_multiple` a multiple of a beat's span."""
    model = _kind_model(info)
    p = info["parameters"]
    model.beat_groups = p.get("beat_groups", 1)
    if not p.get("runtime"):
        model.k_multiple = math.lcm(model.k_multiple, p["m"] * model.beat_groups)
    return model


def _kind_model(info):
    kind = info["parameters"]["pe_kind"]
    if kind not in KINDS:
        raise ValueError(f"no simulation model for PE kind {kind!r}; allowed: {', '.join(KINDS)}")
    if info["parameters"].get("runtime"):
        if kind not in RUNTIME_KINDS:
            raise ValueError(f"no run-time pattern model for PE kind {kind!r}; allowed: "
                             f"{', '.join(RUNTIME_KINDS)}")
        return RUNTIME_KINDS[kind](info)
    return KINDS[kind](info)


RUNTIME_KINDS = {"int": RuntimeIntKind}
