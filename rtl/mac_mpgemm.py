"""The `mpgemm` PE kind: low-bit weights times INT8/INT16 activations, per-group scale and zero
point applied once per quantization group, dyadic requantized output (MixPE style).

Ports (rtl.pe contract): `a` = N signed activations (`act_format`: int8 / int16), `w` = N weights
of `weight_format` (int4 / int2 signed, uint4 / uint2 unsigned), `valid`, `last`, and `w_side`,
the column's per-beat struct (`side_layout`): `scale` (signed 16), `zero` (the weight format's
shape), `mult` (unsigned 16), `shift` (unsigned 6). `result` = signed `out_width`.

A quantization group is `group_size` consecutive K elements, i.e. B = group_size / M beats of
one N:M group each; the unit counts valid beats, so a tile must be a whole number of groups.
`scale` and `zero` must be the same on every beat of a group; `mult` and `shift` are taken from
the tile's `last` beat (other beats' values are ignored). Per group g (golden.dot.mpgemm_gemm,
built on golden.dot.mpgemm_group_dot and golden.dot.requantize):
    s_g = sum over the group's kept pairs of w * a,  t_g = sum over them of a     (exact)
    r_g = scale_g * (s_g - zero_g * t_g)                                           (exact)
    acc = acc + r_g on `acc_bits` signed bits (wraps)
and at the end of the tile y = requantize(acc, mult, shift, out_width): (acc * mult +
2^(shift-1)) >> shift (round half up; no rounding term for shift = 0), saturated to signed
`out_width`. Pruned weights contribute nothing (they never enter s_g or t_g).

`acc_bits` = the width that holds any tile of up to MAX_TILE_K K elements exactly, capped at
MAX_ACC_BITS; `max_tile_k` is the longest tile (a multiple of group_size) that provably cannot
overflow it. `overflow` pulses with `result_valid` when the tile: left the accumulator range,
saturated the output, ended (`last`) in the middle of a quantization group (the partial group
is then closed with its scale and zero point, but the result is flagged, not trusted), or
changed `scale` / `zero` inside a group.

Multipliers: each w * a and zero * t is a shift-and-add of 2..4 partial products (no DSP
block: the weights and zero points are 2..4 bits). The two wide products, scale * u and
acc * mult, are cut into pieces of their wide operand (17-bit unsigned ones, a signed top one
of up to 18 bits), one 18x18 product (one ECP5 MULT18X18D) per piece, each fed by plain
registers (fpga/dsp_pack.py moves them into the block) and followed by a register; a registered
adder tree sums the pieces (`piecewise_product`). INT8 activations: u has 14..19 bits (one or
two blocks), acc 40..43 bits (three): 4 or 5 MULT18X18D per PE; INT16: 5.

Pipeline from `a`/`w`/`w_side` (L = ceil(log2 N), P(x) = `piecewise_latency` of x's width):
  1 input registers, beat position in the group, the scale/zero check
  2 products w * a (and the activations, for t)
  3 .. 2+L  adder tree of the N products and of the N activations
  +1 group sums s, t (one-cycle accumulation loop; s_fin, t_fin at the group's end)
  +1 zero * t
  +1 u = s - zero * t
  +1 copies of u and scale (the product's input registers)
  +P(u) r = scale * u
  +1 acc (one-cycle accumulation loop; `final` at the tile's end)
  +1 the requantizer's input registers
  +P(acc) acc * mult
  +2 shift right by shift - 1 (two halves of the barrel shifter)
  +1 round half up: (x + 1) >> 1 unless shift = 0
  +1 saturate, the result register
INT8 x INT4, N = 2: latency 19.
"""
from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .accumulator import outside_signed_range
from .pipeline import delay

ACT_FORMATS = {"int8": 8, "int16": 16}
WEIGHT_FORMATS = {"int4": signed(4), "int2": signed(2), "uint4": unsigned(4),
                  "uint2": unsigned(2)}
GROUP_SIZES = (16, 32, 64, 128)
SCALE_BITS, MULT_BITS, SHIFT_BITS = 16, 16, 6
MAX_ACC_BITS = 48
MAX_TILE_K = 1 << 16
PIECE_BITS = 17  # unsigned piece of a wide operand: 17 bits + sign = one 18-bit DSP input
DSP_BITS = 18    # the top (signed) piece may use the whole signed 18-bit input


def side_layout(weight_format):
    """The `w_side` struct of one column and beat."""
    return data.StructLayout({"scale": signed(SCALE_BITS), "zero": WEIGHT_FORMATS[weight_format],
                              "mult": unsigned(MULT_BITS), "shift": unsigned(SHIFT_BITS)})


def weight_range(weight_format):
    shape = WEIGHT_FORMATS[weight_format]
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def pair_bound(act_format, weight_format):
    """Largest |scale * (w - zero) * a| of one kept pair."""
    lo, hi = weight_range(weight_format)
    return (1 << (SCALE_BITS - 1)) * (hi - lo) * (1 << (ACT_FORMATS[act_format] - 1))


def signed_bits(bound):
    """Signed width holding every integer in [-bound, bound]."""
    return bound.bit_length() + 1


def shift_add_product(x, y):
    """x * y for a narrow y (2..4 bits): y's bits select shifted copies of x, which are added
    (the top bit's copy subtracted when y is signed). Adders only, no multiplier."""
    shape = y.shape()
    terms = [Mux(y[j], x << j, 0) for j in range(shape.width)]
    if shape.signed:
        return sum(terms[:-1]) - terms[-1]
    return sum(terms)


def reg(m, value, name, shape=None):
    """`value` registered (reset-less, loaded every cycle: no clock enable)."""
    r = Signal(shape if shape is not None else value.shape(), name=name, reset_less=True)
    m.d.sync += r.eq(value)
    return r


def pieces(x_width):
    """(lo, hi) bit ranges of the pieces of an x of `x_width` bits: unsigned PIECE_BITS-bit
    pieces from the bottom, the rest (at most DSP_BITS bits, signed) on top."""
    out, lo = [], 0
    while x_width - lo > DSP_BITS:
        out.append((lo, lo + PIECE_BITS))
        lo += PIECE_BITS
    return out + [(lo, x_width)]


def piecewise_latency(x_width):
    """Latency of `piecewise_product` for an x of `x_width` bits."""
    return 2 + ceil_log2(len(pieces(x_width)))


def piecewise_product(m, x, y, name):
    """x * y (x signed, any width; y at most 17 bits) with one 18x18 product per piece of x
    (`pieces`: 17-bit unsigned ones, the top one signed), each registered (the block's output register, kept in
    the fabric), then a registered adder tree of the pieces, then a register. Latency
    `piecewise_latency(len(x))`. x and y should come straight from plain registers so each
    block can absorb them as its input registers."""
    width = len(x) + len(y) + (0 if y.shape().signed else 1)
    terms = []
    for i, (lo, hi) in enumerate(pieces(len(x))):
        piece = x[lo:hi].as_signed() if hi == len(x) else x[lo:hi]
        product = reg(m, piece * y, f"{name}_piece{i}")
        terms.append(product << lo if lo else product)
    level = 0
    while len(terms) > 1:
        terms = [reg(m, sum(terms[i:i + 2]), f"{name}_sum{level}_{i // 2}")
                 for i in range(0, len(terms), 2)]
        level += 1
    return reg(m, terms[0], name, signed(width))


class MpgemmMac(wiring.Component):
    """y = requantize(sum_g scale_g * (s_g - zero_g * t_g), mult, shift, out_width) per tile."""

    def __init__(self, n, m, act_format, weight_format, group_size, out_width,
                 max_tile_k=MAX_TILE_K, acc_bits=None, beat_sums=False):
        if act_format not in ACT_FORMATS:
            raise ValueError(f"act_format {act_format!r}; allowed: {', '.join(ACT_FORMATS)}")
        if weight_format not in WEIGHT_FORMATS:
            raise ValueError(f"weight_format {weight_format!r}; allowed: "
                             f"{', '.join(WEIGHT_FORMATS)}")
        if group_size % m or not 1 <= n <= m:
            raise ValueError(f"group_size {group_size} is not a multiple of M={m} (N={n})")
        self.n, self.m, self.group_size, self.out_width = n, m, group_size, out_width
        self.act_format, self.weight_format = act_format, weight_format
        self.act_width = ACT_FORMATS[act_format]
        self.weight_shape = WEIGHT_FORMATS[weight_format]
        self.group_beats = group_size // m
        self.group_pairs = self.group_beats * n  # kept pairs of one quantization group
        self.tree_levels = ceil_log2(n)
        bound = pair_bound(act_format, weight_format)
        if acc_bits is None:
            acc_bits = min(MAX_ACC_BITS, signed_bits(bound * (max_tile_k * n // m)))
        self.acc_bits = acc_bits
        # the longest tile (whole groups) whose sum provably fits acc_bits
        pairs = ((1 << (acc_bits - 1)) - 1) // bound
        self.max_tile_k = pairs // self.group_pairs * group_size
        lo, hi = weight_range(weight_format)
        self.u_bits = signed_bits(self.group_pairs * (hi - lo) * (1 << (self.act_width - 1)))
        self.r_bits = self.u_bits + SCALE_BITS
        self.r_latency = piecewise_latency(self.u_bits)
        self.group_latency = 3 + self.r_latency        # group_value
        self.rq_latency = piecewise_latency(self.acc_bits)
        self.requantize_latency = 1 + self.rq_latency + 2 + 1
        self.beat_sums = beat_sums
        # beat sums (`beat_sums`): p = sum of the N products w * a, t = sum of the activations;
        # a group's sums s, t (rtl.ws_partials) hold group_pairs of them
        pair = max(-lo, hi) << (self.act_width - 1)
        act = 1 << (self.act_width - 1)
        self.beat_layout = data.StructLayout({"p": signed(signed_bits(n * pair)),
                                              "t": signed(signed_bits(n * act))})
        self.s_bits = signed_bits(self.group_pairs * pair)
        self.t_bits = signed_bits(self.group_pairs * act)
        self.latency = 2 + self.tree_levels + (0 if beat_sums else (
            1 + self.group_latency + 1 + self.requantize_latency + 1))
        super().__init__({
            "a": In(data.ArrayLayout(signed(self.act_width), n)),
            "w": In(data.ArrayLayout(self.weight_shape, n)),
            # beat sums need no side: the array closes groups (rtl.ws_partials)
            **({} if beat_sums else {"w_side": In(side_layout(weight_format))}),
            "valid": In(1), "last": In(1),
            "result": Out(self.beat_layout if beat_sums else signed(out_width)),
            "result_valid": Out(1), "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.n

        # 1: input registers, position of the beat in its group, scale/zero check.
        a = delay(m, self.a, 1, "a_in", reset_less=True)
        w = delay(m, self.w, 1, "w_in", reset_less=True)
        if not self.beat_sums:
            side = delay(m, self.w_side, 1, "side_in", reset_less=True)
        valid = delay(m, self.valid, 1, "valid_in")
        last = delay(m, self.valid & self.last, 1, "last_in")
        if not self.beat_sums:
            bad, group_end = self._group_position(m, side, valid, last)

        # 2: products (shift-and-add), activations alongside.
        prods = [reg(m, shift_add_product(a[i], w[i]), f"prod{i}") for i in range(n)]
        acts = [reg(m, a[i], f"act{i}") for i in range(n)]
        # 3..2+L: adder trees.
        for level in range(self.tree_levels):
            prods = [reg(m, sum(prods[i:i + 2]), f"psum{level}_{i // 2}")
                     for i in range(0, len(prods), 2)]
            acts = [reg(m, sum(acts[i:i + 2]), f"tsum{level}_{i // 2}")
                    for i in range(0, len(acts), 2)]
        p, t = prods[0], acts[0]
        if self.beat_sums:
            m.d.comb += [self.result.p.eq(p), self.result.t.eq(t),
                         self.result_valid.eq(delay(m, valid, 1 + self.tree_levels, "valid_b"))]
            return m
        cycles = 1 + self.tree_levels
        b_valid = delay(m, valid, cycles, "valid_b")
        b_end = delay(m, valid & group_end, cycles, "end_b")
        b_last = delay(m, last, cycles, "last_b")
        b_bad = delay(m, valid & bad, cycles, "bad_b")
        b_side = delay(m, side, cycles, "side_b", reset_less=True)

        # Group sums; at the group's end s_fin / t_fin take the whole group.
        pairs_bits = ceil_log2(self.group_pairs + 1)
        s_acc = Signal(signed(len(p) + pairs_bits), name="s_acc")
        t_acc = Signal(signed(len(t) + pairs_bits), name="t_acc")
        g_bad = Signal(name="group_bad")
        with m.If(b_valid):
            with m.If(b_end):
                m.d.sync += [s_acc.eq(0), t_acc.eq(0), g_bad.eq(0)]
            with m.Else():
                m.d.sync += [s_acc.eq(s_acc + p), t_acc.eq(t_acc + t), g_bad.eq(g_bad | b_bad)]
        s_fin = reg(m, s_acc + p, "s_fin", s_acc.shape())
        t_fin = reg(m, t_acc + t, "t_fin", t_acc.shape())
        f_valid = Signal(name="valid_f")
        f_last = Signal(name="last_f")
        f_bad = Signal(name="bad_f")
        m.d.sync += [f_valid.eq(b_valid & b_end), f_last.eq(b_valid & b_end & b_last),
                     f_bad.eq(b_valid & (g_bad | b_bad))]
        f_side = delay(m, b_side, 1, "side_f", reset_less=True)

        r = self.group_value(m, s_fin, t_fin, f_side)
        cycles = self.group_latency
        r_valid = delay(m, f_valid, cycles, "valid_r")
        r_last = delay(m, f_last, cycles, "last_r")
        r_bad = delay(m, f_bad, cycles, "bad_r")
        r_mult = delay(m, f_side.mult, cycles, "mult_r", reset_less=True)
        r_shift = delay(m, f_side.shift, cycles, "shift_r", reset_less=True)

        # Tile accumulator (wraps); `final` holds the tile's sum.
        width = self.acc_bits
        acc = Signal(signed(width), name="acc")
        exact = Signal(signed(max(width, len(r)) + 1), name="acc_exact")
        m.d.comb += exact.eq(acc + r)
        out_of_range = outside_signed_range(exact[width - 1:])
        tile_bad = Signal(name="tile_bad")
        flag = tile_bad | out_of_range | r_bad
        final = Signal(signed(width), name="final", reset_less=True)
        final_flag = Signal(name="final_flag", reset_less=True)
        q_mult = Signal(MULT_BITS, name="final_mult", reset_less=True)
        q_shift = Signal(SHIFT_BITS, name="final_shift", reset_less=True)
        with m.If(r_valid):
            with m.If(r_last):
                m.d.sync += [acc.eq(0), tile_bad.eq(0), final.eq(exact[:width]),
                             final_flag.eq(flag), q_mult.eq(r_mult),
                             q_shift.eq(r_shift)]
            with m.Else():
                m.d.sync += [acc.eq(exact[:width]), tile_bad.eq(flag)]
        q_valid = Signal(name="valid_q")
        m.d.sync += q_valid.eq(r_valid & r_last)

        y, flag = self.requantize(m, final, q_mult, q_shift, final_flag)
        out_valid = delay(m, q_valid, self.requantize_latency, "valid_o")
        result = Signal(signed(self.out_width), name="result_reg", reset_less=True)
        with m.If(out_valid):    # held until the next tile
            m.d.sync += result.eq(y)
        m.d.sync += [self.result_valid.eq(out_valid), self.overflow.eq(out_valid & flag)]
        m.d.comb += self.result.eq(result)
        return m

    def _group_position(self, m, side, valid, last):
        """(bad, group_end) of the beat entering stage 1: its group ends here (its last beat or
        the tile's `last`); bad = `last` in mid-group, or the scale or zero point changed
        within the group."""
        beats = self.group_beats
        if beats == 1:
            return Const(0), Const(1)
        count = Signal(range(beats), name="group_beat")
        first, final = count == 0, count == beats - 1
        with m.If(valid):
            m.d.sync += count.eq(Mux(final | last, 0, count + 1))
        ref_scale = Signal.like(side.scale, name="ref_scale", reset_less=True)
        ref_zero = Signal.like(side.zero, name="ref_zero", reset_less=True)
        with m.If(valid & first):
            m.d.sync += [ref_scale.eq(side.scale), ref_zero.eq(side.zero)]
        changed = ~first & ((side.scale != ref_scale) | (side.zero != ref_zero))
        return (last & ~final) | changed, final | last

    def group_value(self, m, s, t, side, name=""):
        """r = scale * (s - zero * t) of a quantization group's sums and `side`,
        `group_latency` cycles later: zero * t, u = s - zero * t (exact in u_bits), u's plain
        copy and scale (the multiplier blocks absorb them as input registers), the pieces."""
        zt = reg(m, shift_add_product(t, side.zero), f"{name}zero_t")
        u = reg(m, reg(m, s, f"{name}s_d") - zt, f"{name}u", signed(self.u_bits))
        u = reg(m, u, f"{name}u_in")
        scale = delay(m, side.scale, 3, f"{name}scale", reset_less=True)
        return piecewise_product(m, u, scale, f"{name}r")

    def requantize(self, m, acc, mult, shift, flag, name=""):
        """(y, flag) `requantize_latency` cycles after `acc`: (acc * mult + 2^(shift-1)) >>
        shift (round half up, none for shift = 0) saturated to signed out_width; the flag is
        `flag` (delayed) or the saturation. Steps: input registers, the pieces of acc * mult,
        the shift by shift - 1 in two halves, the rounding."""
        x = reg(m, acc, f"{name}rq_acc")
        mult = reg(m, mult, f"{name}rq_mult")
        prod = piecewise_product(m, x, mult, f"{name}rq_prod")
        cycles = self.rq_latency
        amount = Signal(SHIFT_BITS, name=f"{name}rq_amount_in")  # shift - 1, or 0 for 0
        m.d.comb += amount.eq(Mux(shift == 0, 0, shift - 1))
        amount = delay(m, reg(m, amount, f"{name}rq_amount"), cycles, f"{name}rq_amount_p",
                       reset_less=True)
        no_shift = delay(m, reg(m, shift == 0, f"{name}rq_noshift"), cycles + 2,
                         f"{name}rq_noshift_p", reset_less=True)
        flag = delay(m, reg(m, flag, f"{name}rq_flag"), cycles, f"{name}rq_flag_p",
                     reset_less=True)
        coarse = reg(m, prod >> Cat(Const(0, 3), amount[3:]), f"{name}rq_coarse")
        half = reg(m, coarse >> delay(m, amount[:3], 1, f"{name}rq_fine", reset_less=True),
                   f"{name}rq_half")
        flag = delay(m, flag, 2, f"{name}rq_flag_h", reset_less=True)
        y = reg(m, Mux(no_shift, half, (half + 1) >> 1), f"{name}rq_y", signed(len(half)))
        flag = delay(m, flag, 1, f"{name}rq_flag_y", reset_less=True)
        out = self.out_width
        top = y[out - 1:]
        fits = top.all() | ~top.any()
        lo, hi = -(1 << (out - 1)), (1 << (out - 1)) - 1
        return Mux(fits, y[:out], Mux(y[-1], lo, hi)), flag | ~fits
