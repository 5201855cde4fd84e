"""Partial sums of the weight-stationary array (rtl.ws_array), one class per PE kind: the
layout that flows down a column (and through the accelerator's accumulator memory), `add` (one
PE's update with its MAC unit's exact beat sum, combinational; `hop` when it is pipelined) and,
for kinds whose partial sums are finished after the bottom row, `finish` (a pipeline of
`finish_latency` cycles per column giving the record to pass on, the finished `value` (FP32, or
`value_bits` wide) and the flag) with the act-beat fields (`act_fields`) and weight-tile column
fields (`tile_fields`) it reads. An all-zero record is the empty sum (a GEMM's first K-block)."""
from amaranth import Mux, Signal, signed
from amaranth.lib import data

from .accumulator import fit_signed, outside_signed_range
from .fp32 import EXP_SHAPE, FP32_ADD_LATENCY, fp32_add, reg
from .formats import E8M0_BIAS, E8M0_NAN
from .mac_mpgemm import side_layout as mpgemm_side_layout
from .pipeline import delay

FP32_NEG_ZERO = 0x80000000


class PartialSum:
    """What rtl.ws_array reads of every kind's partial sum, with the defaults of a kind that adds
    in one cycle per PE row and has nothing to finish (the integer kinds)."""

    hop = 1               # cycles a partial sum takes per PE row
    finishes = False      # True: `finish` runs after the bottom row (`finish_latency` cycles)
    finish_latency = 0
    act_fields, tile_fields = {}, {}   # what `finish` reads of the act beat / the weight tile
    value_bits = 32       # the finished value's bits


class IntPartialSum(PartialSum):
    """Integer partial sums: `width` bits, psum + the beat's exact sum under the overflow policy
    ("wrap" or "saturate"); `add` also says when the exact sum left the range."""

    def __init__(self, width, overflow):
        self.width, self.saturate = width, overflow == "saturate"
        self.layout = signed(width)

    def add(self, m, psum, beat):
        width = self.width
        exact = Signal(signed(max(width, len(beat)) + 1))
        m.d.comb += exact.eq(psum + beat)
        return fit_signed(exact, width, self.saturate)


class ExactFpPartialSum(PartialSum):
    """Kind "fp" (exact accumulation): rtl.mac_fp.ExactSum records (wide fixed point + special
    classes) summed exactly down the columns and across K-blocks, rounded to FP32 once: the
    finished value of the last K-block is golden.fp_mac_exact's result. No flag until then."""

    finishes = True

    def __init__(self, exact_sum):
        self.sum, self.layout = exact_sum, exact_sum.layout
        self.finish_latency = exact_sum.round_latency

    def add(self, m, psum, beat):
        return self.sum.add_records(m, psum, beat), 0

    def finish(self, m, total, context, name):
        bits, flag = self.sum.round_record(m, total, name)
        return delay(m, total, self.finish_latency, f"{name}_sum", reset_less=True), bits, flag


class Fp32PartialSum(PartialSum):
    """Kind "fp" with FP32 accumulation: a record is the FP32 sum so far (`bits`, +0.0 when all
    zero) and its sticky `flag` (a product or addition raised overflow or invalid); each PE adds
    its group's FP32 beat sum (FpMac `beat_sums`: the pairwise tree of the rounded products)
    with one RNE addition, so a column sums its groups in K order from +0.0:
    golden.fp_mac.fp_mac_fp32 with one lane. The addition takes FP32_ADD_LATENCY cycles, so a
    partial sum moves down one PE row in `hop` cycles. The value is the sum itself."""

    hop = 1 + FP32_ADD_LATENCY
    finishes = True

    def __init__(self):
        self.layout = data.StructLayout({"bits": 32, "flag": 1})

    def add(self, m, psum, beat):
        bits, flag = fp32_add(m, psum.bits, beat.bits, name="psum_add")
        out = Signal(self.layout, name="record")
        m.d.comb += [out.bits.eq(bits),
                     out.flag.eq(flag | delay(m, psum.flag | beat.flag, FP32_ADD_LATENCY,
                                              "psum_flag", reset_less=True))]
        return out, 0

    def finish(self, m, total, context, name):
        return total, total.bits, total.flag


class MxPartialSum(PartialSum):
    """Kind "mx": a record is the current scale block's exact sum (`block`, the MAC's
    `block_sum` ExactSum), `sum` the FP32 sum of the blocks before (-0.0 until `started`) and
    their sticky `flag`. Each PE adds its group to `block`; after the bottom row a beat marked
    `block_last` (its K-block ends a 32-element block) closes the block: rounded once with
    the scales (act `side` of the row, tile `side` of the column: x 2^(sa + sw - 254), NaN for a
    0xFF scale; golden.mx.mx_block_dot) and added to `sum` in FP32 RNE (rtl.fp32.fp32_add), so
    blocks add in K order from -0.0: golden.mx.mx_tile with one lane."""

    finishes = True
    act_fields, tile_fields = {"side": 8, "block_last": 1}, {"side": 8}

    def __init__(self, block_sum):
        self.block_sum = block_sum
        self.layout = data.StructLayout({"block": block_sum.layout, "sum": 32, "flag": 1,
                                         "started": 1})
        self.finish_latency = block_sum.round_latency + 1 + FP32_ADD_LATENCY

    def add(self, m, psum, beat):
        out = Signal(self.layout, name="record")
        m.d.comb += [out.block.eq(self.block_sum.add_records(m, psum.block, beat)),
                     out.sum.eq(psum.sum), out.flag.eq(psum.flag), out.started.eq(psum.started)]
        return out, 0

    def finish(self, m, total, context, name):
        rounding, add = self.block_sum.round_latency, FP32_ADD_LATENCY
        scale = Signal(EXP_SHAPE, name=f"{name}_scale")
        m.d.comb += scale.eq(context["side"] + context["w_side"] - 2 * E8M0_BIAS)
        scale_nan = (context["side"] == E8M0_NAN) | (context["w_side"] == E8M0_NAN)
        block, block_flag = self.block_sum.round_record(m, total.block, name, scale, scale_nan)
        before = delay(m, Mux(total.started, total.sum, FP32_NEG_ZERO), rounding,
                       f"{name}_before", reset_less=True)
        x, y = reg(m, before, f"{name}_x"), reg(m, block, f"{name}_y")
        new_sum, add_flag = fp32_add(m, x, y, name=f"{name}_add")
        block_flag = delay(m, block_flag, 1 + add, f"{name}_bflag", reset_less=True)
        later = self.finish_latency
        kept = delay(m, total, later, f"{name}_kept", reset_less=True)
        close = delay(m, context["block_last"], later, f"{name}_close", reset_less=True)
        out = Signal(self.layout, name=f"{name}_record")
        with m.If(close):
            m.d.comb += [out.sum.eq(new_sum), out.flag.eq(kept.flag | block_flag | add_flag),
                         out.started.eq(1)]
        with m.Else():
            m.d.comb += out.eq(kept)
        return out, out.sum, out.flag


class PositPartialSum(PartialSum):
    """Kind "posit": a record is a quire (`value`, Q bits of rtl.mac_posit.PositMac, wrapping),
    `nar` (a NaR operand met) and `bound` (a partial sum reached |S| >= 2^(Q-1): the quire's
    carry guard overflowed, golden.posit_mac); each PE adds its group's exact sum, the sum is
    rounded once to the posit format after the bottom row (`round_quire`); NaR when `nar` or
    `bound`, whose flag raises `overflow` on the last K-block."""

    finishes = True

    def __init__(self, mac):
        self.mac, self.q = mac, mac.quire_bits
        self.value_bits = mac.bits
        self.layout = data.StructLayout({"value": signed(self.q), "nar": 1, "bound": 1})
        self.finish_latency = mac.round_latency

    def add(self, m, psum, beat):
        q = self.q
        exact = Signal(signed(q + 1), name="quire_exact")
        out = Signal(self.layout, name="quire")
        limit = 1 << (q - 1)
        m.d.comb += [exact.eq(psum.value + beat.value), out.value.eq(exact[:q]),
                     out.nar.eq(psum.nar | beat.nar),
                     out.bound.eq(psum.bound | (exact >= limit) | (exact <= -limit))]
        return out, 0

    def finish(self, m, total, context, name):
        code = self.mac.round_quire(m, total.value, total.nar | total.bound)
        later = self.finish_latency
        return (delay(m, total, later, f"{name}_sum", reset_less=True), code,
                delay(m, total.bound, later, f"{name}_bound", reset_less=True))


class MpgemmPartialSum(PartialSum):
    """Kind "mpgemm": a record is the current quantization group's exact sums (`s` = sum w*a,
    `t` = sum a, rtl.mac_mpgemm.MpgemmMac), the accumulator of the groups before (`acc`,
    acc_bits, wrapping) and the sticky `flag` (acc left its range). Each PE adds its group's
    (p, t); after the bottom row a beat marked `block_last` (its K-block ends a quantization
    group) closes the group with its column's tile `side` (scale, zero: MpgemmMac.group_value)
    into `acc`; every beat's `value` is acc requantized with the tile's mult and shift
    (MpgemmMac.requantize: the last K-block's is the output, golden.dot.mpgemm_gemm), the flag
    adding the output's saturation."""

    finishes = True
    act_fields = {"block_last": 1}

    def __init__(self, mac):
        self.mac, self.side = mac, mpgemm_side_layout(mac.weight_format)
        self.tile_fields = {"side": self.side}
        self.value_bits = mac.out_width
        self.layout = data.StructLayout({"s": signed(mac.s_bits), "t": signed(mac.t_bits),
                                         "acc": signed(mac.acc_bits), "flag": 1})
        self.finish_latency = mac.group_latency + mac.requantize_latency

    def add(self, m, psum, beat):
        out = Signal(self.layout, name="record")
        m.d.comb += [out.s.eq(psum.s + beat.p), out.t.eq(psum.t + beat.t),
                     out.acc.eq(psum.acc), out.flag.eq(psum.flag)]
        return out, 0

    def finish(self, m, total, context, name):
        mac, width = self.mac, self.mac.acc_bits
        side = data.View(self.side, context["w_side"])
        r = mac.group_value(m, total.s, total.t, side, f"{name}_")
        later = mac.group_latency
        kept = delay(m, total, later, f"{name}_kept", reset_less=True)
        close = delay(m, context["block_last"], later, f"{name}_close", reset_less=True)
        exact = Signal(signed(max(width, len(r)) + 1), name=f"{name}_acc_exact")
        m.d.comb += exact.eq(kept.acc + r)
        record = Signal(self.layout, name=f"{name}_record")
        with m.If(close):
            m.d.comb += [record.acc.eq(exact[:width]),
                         record.flag.eq(kept.flag | outside_signed_range(exact[width - 1:]))]
        with m.Else():
            m.d.comb += record.eq(kept)
        sides = data.View(self.side, delay(m, context["w_side"], later, f"{name}_side",
                                           reset_less=True))
        value, flag = mac.requantize(m, record.acc, sides.mult, sides.shift, record.flag,
                                     f"{name}_")
        return (delay(m, record, mac.requantize_latency, f"{name}_out", reset_less=True),
                value, flag)
