"""Per PE kind, the one place that knows its numbers: random operands and the golden result of a
GEMM, both in port terms (the integers that go on and come off the wires).

`kind_model(info)` reads a manifest and returns the kind's model, with:
  random_gemm(rng, shape, extreme) -> (a, values, indices): activations (M x K) and the N:M
      compressed weights (K/M*N x cols) with their indices, as port values;
  random_acts(rng, count) -> junk activations (for bubbles);
  golden(a, values, indices) -> (c, overflowed): the (M x cols) result port values and whether
      the design's overflow flag must rise.
tb_array and tb_pe use only this interface, so a new PE kind adds one class here.
"""
import numpy as np

from ..golden import formats as F
from ..golden.fp_mac import fp_mac
from ..golden.gemm import sparse_gemm_int
from ..golden.ints import random_ints
from ..golden.nm import compress_nm, random_nm_weights


class IntKind:
    """Kind "int": signed integers, golden.gemm.sparse_gemm_int."""

    def __init__(self, info):
        p = info["parameters"]
        self.n, self.m, self.dense = p["n"], p["m"], p["dense"]
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
        values, indices = compress_nm(w, self.n, self.m)
        return a, values, indices

    def golden(self, a, values, indices):
        return sparse_gemm_int(a, values, indices, self.n, self.m, self.acc_width, self.overflow)


class FpKind:
    """Kind "fp": format codes in, FP32 bits out, golden.fp_mac over the kept pairs."""

    SPECIAL_RATE = 0.004  # share of NaN / inf codes among random operands

    def __init__(self, info):
        p, pe = info["parameters"], info["pe"]
        self.n, self.m, self.dense = p["n"], p["m"], p["dense"]
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

    def random_gemm(self, rng, shape, extreme=False):
        mdim, k, ndim = shape
        groups = k // self.m
        if extreme:  # corners only: +-max, min subnormals, zeros, specials
            a = rng.choice(self.corner_codes(self.fa), size=(mdim, k))
            values = rng.choice(self.corner_codes(self.fb), size=(groups * self.n, ndim))
        else:
            a = self.codes(self.fa, rng, (mdim, k))
            values = self.codes(self.fb, rng, (groups * self.n, ndim))
        indices = np.array([[sorted(rng.choice(self.m, self.n, replace=False)) for _ in range(ndim)]
                            for _ in range(groups)])  # (groups, ndim, n)
        indices = indices.transpose(0, 2, 1).reshape(groups * self.n, ndim)
        return a, values, indices

    def golden(self, a, values, indices):
        """Per output (i, j): the tile of beats g = 0..K/M-1, lanes l = 0..N-1 with the pair
        (a[i, g*M + indices[g*N+l, j]], values[g*N+l, j])."""
        a, values, indices = (np.asarray(x, dtype=np.int64) for x in (a, values, indices))
        groups = values.shape[0] // self.n
        idx = indices.reshape(groups, self.n, -1)                     # (G, N, cols)
        pos = np.arange(groups)[:, None, None] * self.m + idx          # (G, N, cols)
        acts = a[:, pos]                                               # (rows, G, N, cols)
        acts = acts.transpose(0, 3, 1, 2)                              # (rows, cols, G, N)
        weights = values.reshape(groups, self.n, -1).transpose(2, 0, 1)  # (cols, G, N)
        weights = np.broadcast_to(weights, acts.shape)
        bits, flags = fp_mac(self.fa, acts, self.fb, weights, self.accumulate, self.lanes,
                             self.acc_bits)
        return bits.astype(np.int64), bool(flags.any())


KINDS = {"int": IntKind, "fp": FpKind}


def kind_model(info):
    """The model of the manifest's PE kind."""
    kind = info["parameters"]["pe_kind"]
    if kind not in KINDS:
        raise ValueError(f"no simulation model for PE kind {kind!r}; allowed: {', '.join(KINDS)}")
    return KINDS[kind](info)
