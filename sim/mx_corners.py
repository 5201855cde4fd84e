"""MX tiles that put the FP32 adders of the `mx` MAC (rtl.fp32.fp32_add: the lane accumulator
and each adder of the final lane sum) at their rounding corners, which random operands do not
reach: an MX block's exact sum holds a few significant bits (12 at most for MXFP4), so a random
tile's additions almost never meet a tie whose outcome one sticky bit decides.

fp32_add aligns the smaller addend's significand (24 bits and 3 zero bits below: positions
0..26) right by the exponent difference d and ORs into bit 0 a sticky bit: any set bit at a
position below d (the add and the subtract path each compute it). Each tile adds +-y (exact:
L = 4..24 significant bits, its lowest set bit at position 27 - L; one or more blocks summed
first) to x = 1.1b * 2^e (3, or 24 bits where the LSB must be odd), such that
  - "sticky" (d = 28 - L): y's lowest bit is the only one shifted out, and dropping it changes
    the rounded sum: its sticky term decides the result;
  - "tie" (d = 25 - L, y's top three bits set where it can): y's lowest bit is the guard bit of
    an exact tie that no bit below breaks: a sticky term raised for a bit not shifted out (the
    lowest, or one of the top three) changes the rounded sum.
Both checked with exact arithmetic for each tile drawn (`rounds_apart`). Over L = 4..24 (ties:
4..23, a 24-bit tie would carry out of x's binade) and both signs, every sticky term of
positions 3..26 of both paths decides some tile's result.
"""
import numpy as np

from ..golden.mx import SCALE_BIAS

X_CANDIDATES = (3, 0xC00001)  # x = 1.1b * 2^e with an even, or an odd, LSB
DISTANCE = {"sticky": 28, "tie": 25}  # d + L: x's exponent above y's lowest bit, + 1


def rounds_apart(x, y, other):
    """Whether x + y and x + other (exact integers below 2^53) round to different FP32 values."""
    return np.float32(float(x + y)) != np.float32(float(x + other))


def element_units(fmt):
    """{positive finite code: its value in units of 2^lsb_exp} (integers)."""
    codes = fmt.codes()
    values = fmt.decode(codes)
    keep = np.isfinite(values) & (values > 0)
    return {int(c): int(v) for c, v in zip(codes[keep], np.ldexp(values[keep], -fmt.lsb_exp))}


class AdderTiles:
    """The rounding tiles of an `mx` design (MxKind): one tile each, the same in every PE."""

    def __init__(self, fmt, n, m, lanes, block_size):
        self.fmt, self.n, self.m, self.lanes = fmt, n, m, lanes
        self.per_block = block_size // m
        self.slots = self.per_block * n  # kept pairs per block
        units = element_units(fmt)
        products = {}
        for a, ua in units.items():
            for w, uw in units.items():
                products.setdefault(ua * uw, (a, w))
        self.products = dict(sorted(products.items(), reverse=True))  # largest first
        self.chunk_bits = (self.slots * max(self.products)).bit_length() - 1
        values = fmt.decode(fmt.codes())
        self.negated = {code: int(np.flatnonzero(values == -values[code])[0]) for code in units}

    def decompose(self, total):
        """Code pairs whose exact products sum to `total` units, at most one block's kept pairs
        (largest product first, as often as it fits), or None."""
        pairs, rest = [], total
        for value, pair in self.products.items():
            take = min(rest // value, self.slots - len(pairs))
            pairs += [pair] * take
            rest -= take * value
        return pairs if rest == 0 else None

    def chunks(self, y):
        """y split into `chunk_bits`-bit parts from the bottom, each a block's [(a, w)], or None."""
        parts = []
        while y:
            pairs = self.decompose(y & ((1 << self.chunk_bits) - 1))
            if pairs is None:
                return None
            parts.append(pairs)
            y >>= self.chunk_bits
        return parts

    def addend(self, way, bits, sign):
        """(x, x's exponent e, y, chunks of x, chunks of y) for one tile (module docstring), or
        None: the first odd y of `bits` bits (ties: from 111...1) and x whose chunks decompose
        and whose rounded sum the sticky bit decides; x and y not both of several blocks (one
        must come last)."""
        first = (1 << (bits - 1)) | 1 if way == "sticky" else (7 << (bits - 3)) | 1
        for y in range(first, min(first + 4096, 1 << bits), 2):
            y_parts = self.chunks(y)
            if y_parts is None:
                continue
            low = y & -y
            # the value the faulty sticky makes of y, times 4: its shifted-out bit lost, or
            # a bit below the guard raised
            other = 4 * y - 4 * low if way == "sticky" else 4 * y + low
            for x in X_CANDIDATES:
                x_parts = self.chunks(x)
                x_exp = DISTANCE[way] - x.bit_length()
                if (x_parts is not None and min(len(x_parts), len(y_parts)) == 1
                        and rounds_apart(4 * x << x_exp, 4 * sign * y, sign * other)):
                    return x, x_exp, y, x_parts, y_parts
        return None

    def tiles(self, rows, cols):
        """[(description, Operands fields, (x, +-y) in units)] for every way, L = 4..24 (ties to
        23), sign and adder (the lane accumulator, then each adder of the lane sum)."""
        out = []
        for way, longest in (("sticky", 24), ("tie", 23)):
            for bits in range(4, longest + 1):
                for sign in (1, -1):
                    found = self.addend(way, bits, sign)
                    if found is None:
                        continue
                    x, x_exp, y, x_parts, y_parts = found
                    for adder in range(self.lanes):
                        blocks = self._blocks(x_parts, x_exp, y_parts, sign, adder)
                        out.append((f"{way} tile, {'+-'[sign < 0]}y of {bits} bits, adder {adder}",
                                    self._operands(rows, cols, blocks), (x << x_exp, sign * y)))
        return out

    def _blocks(self, x_parts, x_exp, y_parts, sign, adder):
        """[(pairs, scale exponent) or None per block]: adder 0 (the lane accumulator) sums, in
        lane 0, the value of several chunks first and then the other (one block); adder k > 0
        (the lane sum's k-th adder) sees x in lane 0 and y in lane k."""
        xs = [(pairs, x_exp + self.chunk_bits * t) for t, pairs in enumerate(x_parts)]
        if sign < 0:
            y_parts = [[(self.negated[a], w) for a, w in pairs] for pairs in y_parts]
        ys = [(pairs, self.chunk_bits * t) for t, pairs in enumerate(y_parts)]
        if adder == 0:
            sequence = xs + ys if len(ys) == 1 else ys + xs
            placed = {t * self.lanes: chunk for t, chunk in enumerate(sequence)}
        else:
            placed = {t * self.lanes: chunk for t, chunk in enumerate(xs)}
            placed |= {adder + t * self.lanes: chunk for t, chunk in enumerate(ys)}
        return [placed.get(j) for j in range(max(placed) + 1)]

    def _operands(self, rows, cols, blocks):
        """The Operands fields of one tile of `blocks`, the same in every PE."""
        groups = len(blocks) * self.per_block
        a = np.zeros((rows, groups * self.m), dtype=np.int64)
        values = np.zeros((groups * self.n, cols), dtype=np.int64)
        a_side = np.full((rows, groups), SCALE_BIAS, dtype=np.int64)
        w_side = np.full((groups, cols), SCALE_BIAS, dtype=np.int64)
        for j, block in enumerate(blocks):
            if block is None:
                continue
            pairs, exp = block
            beats = slice(j * self.per_block, (j + 1) * self.per_block)
            a_side[:, beats], w_side[beats, :] = SCALE_BIAS + (exp + 1) // 2, SCALE_BIAS + exp // 2
            for slot, (code_a, code_w) in enumerate(pairs):
                group, lane = j * self.per_block + slot // self.n, slot % self.n
                a[:, group * self.m + lane] = code_a
                values[group * self.n + lane, :] = code_w
        indices = np.tile(np.arange(self.n, dtype=np.int64)[:, None], (groups, cols))
        return dict(a=a, values=values, indices=indices, a_side=a_side, w_side=w_side)
