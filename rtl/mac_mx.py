"""The `mx` PE kind: OCP MX block dot products (MXFP8, MXFP6, MXFP4, MXINT8) with two E8M0 scales.

Ports (the contract of rtl.mac_int.IntMac plus two side inputs): `a`/`w` = N element codes of
the MX element format (unsigned raw bits; both operands the same format), `a_side` = the E8M0
scale of the activation row's current block, `w_side` = the E8M0 scale of the weight column's
current block, `valid`, `last` in; `result` (FP32 bits), `result_valid`, `overflow` out.

A block is 32 consecutive K elements = 32/M beats; the kept pairs of its beats (32/M * N of
them) are one MX block dot product, the pruned positions contributing nothing. The bit-exact
model is golden.mx.mx_mac (beats) / golden.mx.mx_tile (blocks); the short version:

  per block: the products exact (unpacked significands, one LUT multiplier per lane as in
    rtl.mac_fp; MXINT8: a signed 8 x 8 multiplier, rtl.mac_int.Multiplier), summed exactly in a
    two's-complement fixed-point block accumulator (`block_acc_bits`, enough for 32 products:
    never overflows), then times 2^(ea + eb - 254) with the scales sampled on the block's LAST
    beat, rounded once to FP32 with RNE (rtl.fp32.round_fp32): golden.mx.mx_block_dot.
    A scale 0xFF gives NaN; element NaNs, inf * 0 and +inf meeting -inf give NaN; else an
    infinite element gives +-inf.
  per tile: the block results are added in FP32 RNE (rtl.fp32.fp32_add) into L = `lanes`
    partial sums, block j into slot j mod L, each slot starting at -0.0 (the exact identity of
    RNE addition, so a one-block tile is that block's result bit for bit), and on `last` the
    slots are summed in index order (((s0 + s1) + s2) + ...). The adder loop (operand register
    + adder) is 1 + A cycles long (A = FP32_ADD_LATENCY) and a block takes at least 32/M
    cycles, so L = ceil((1 + A) / (32/M)): L = 1 (plain sequential sum in K order) for M <= 4,
    2 for M = 8, 4 for M = 16.

`overflow` pulses with `result_valid` when the tile raised an invalid operation (inf * 0,
inf + -inf, inside a block or between blocks), FP32 overflow (a block's scaled sum or a sum of
blocks rounds to +-inf), or when `last` arrived mid-block (the tile's K is not a multiple of
32: malformed; the result is then NaN, and the next tile starts a fresh block). NaN scales and
NaN elements propagate quietly.

Pipeline from `a`/`w` (FP elements): 1 input registers, 2 unpacked, 3 products, 4 aligned
magnitudes, 5 signed lane values (MXINT8: 3 products), ceil(log2 N) adder tree levels, then the
block accumulator (on a block's last beat: the block register), sign/magnitude, the rounding
stages (leading zeros registered every OUT_LZ_SPLIT steps, shift amounts, shift, round), the
block result register, the slot operand registers, the adder (A), the slot snapshot,
(L - 1) * A for the slot sum, the result register.
"""
from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .formats import E8M0_BIAS as SCALE_BIAS, E8M0_NAN as SCALE_NAN, MX_BLOCK_SIZE as BLOCK_SIZE
from .formats import MX_ELEMENTS, mx_element
from .fp32 import EXP_SHAPE, FP32_ADD_LATENCY, fp32_add, reg, round_fp32, round_latency
from .mac_fp import OUT_LZ_SPLIT, SPECIAL_CLASSES, ExactSum, lut_product, unpack
from .mac_int import Multiplier, multipliers
from .pipeline import delay

FP32_NEG_ZERO = 0x80000000
MX_FORMATS = tuple(MX_ELEMENTS)  # config names: mxfp8_e4m3, ..., mxint8
MX_BLOCK_SIZES = (BLOCK_SIZE,)


def mx_lanes(m):
    """Partial sums L the block accumulation needs at M: a block every >= 32/M cycles, an adder
    loop of 1 + FP32_ADD_LATENCY cycles."""
    per_block = BLOCK_SIZE // m
    return -(-(1 + FP32_ADD_LATENCY) // per_block)


class MxMac(wiring.Component):
    """Accumulates, over the blocks of a tile, MX block dot products of the N kept pairs per beat;
    one FP32 result per tile (see the module docstring for the order). With `beat_sums` it does
    not accumulate: `result` is every beat's exact sum and special classes (`beat_layout`,
    `result_valid` per beat, `latency` = the lanes + the tree), the scales unused, for arrays
    that sum blocks elsewhere (`block_sum`, an rtl.mac_fp.ExactSum; rtl.ws_array)."""

    def __init__(self, n, m, format, block_size=BLOCK_SIZE, beat_sums=False):
        if format not in MX_FORMATS:
            raise ValueError(f"format {format!r} is not supported; allowed: {', '.join(MX_FORMATS)}")
        if block_size not in MX_BLOCK_SIZES:
            raise ValueError(f"MX block size {block_size} is not supported; allowed: "
                             f"{', '.join(map(str, MX_BLOCK_SIZES))}")
        if not 1 <= n <= m or BLOCK_SIZE % m:
            raise ValueError(f"N:M = {n}:{m}: M must divide {BLOCK_SIZE} and 1 <= N <= M")
        self.n, self.m, self.format, self.block_size = n, m, format, block_size
        self.beat_sums = beat_sums
        self.elem = mx_element(format)
        self.is_int = self.elem.kind == "int"
        self.beats_per_block = BLOCK_SIZE // m
        self.tree_levels = ceil_log2(n)
        self.lsb_exp = 2 * self.elem.lsb_exp  # weight of the block accumulator's LSB
        if self.is_int:
            self.lane_stages = Multiplier.latency
            self.lane_bits = 2 * self.elem.width  # signed product
        else:
            self.lane_stages = 5
            max_offset = 2 * ((1 << self.elem.exp_bits) - 2)
            self.lane_bits = 2 * self.elem.sig_bits + max_offset + 1  # signed lane value
        self.block_acc_bits = self.lane_bits + ceil_log2(n * self.beats_per_block)
        self.lanes = 1 if beat_sums else mx_lanes(m)   # beat sums: blocks add in K order
        self.round_stages = round_latency(self.block_acc_bits, OUT_LZ_SPLIT)
        self.block_sum = ExactSum(self.block_acc_bits, self.lsb_exp)
        self.beat_layout = data.StructLayout({
            "value": signed(self.lane_bits + self.tree_levels),
            **{name: 1 for name in SPECIAL_CLASSES}})
        add = FP32_ADD_LATENCY
        self.latency = self.lane_stages + self.tree_levels + (0 if beat_sums else (
            2 + self.round_stages + 1 + 1 + add + 1 + (self.lanes - 1) * add + 1))
        code = unsigned(self.elem.width)
        super().__init__({
            "a": In(data.ArrayLayout(code, n)),
            "w": In(data.ArrayLayout(code, n)),
            "valid": In(1), "last": In(1),
            # beat sums need no scales: the array closes blocks (rtl.ws_partials)
            **({} if beat_sums else {"a_side": In(unsigned(8)), "w_side": In(unsigned(8))}),
            "result": Out(self.beat_layout if beat_sums else unsigned(32)),
            "result_valid": Out(1), "overflow": Out(1),
        })

    # -------------------------------------------------------------------------------- lanes

    def _float_lanes(self, m):
        """Signed lane values (cycle 5) and the beat's special classes (cycle 3) per lane."""
        fmt = self.elem
        a = delay(m, self.a, 1, "a_in", reset_less=True)
        w = delay(m, self.w, 1, "w_in", reset_less=True)
        values, specials = [], []
        for i in range(self.n):
            sa, ma, oa, nan_a, inf_a = unpack(a[i], fmt)
            sb, mb, ob, nan_b, inf_b = unpack(w[i], fmt)
            zero_a = ~ma.any() & ~nan_a & ~inf_a
            zero_b = ~mb.any() & ~nan_b & ~inf_b
            invalid = (inf_a & zero_b) | (inf_b & zero_a)
            u = {k: reg(m, v, f"u{i}_{k}") for k, v in dict(
                sign=sa ^ sb, ma=ma, mb=mb, oa=oa, ob=ob, nan=nan_a | nan_b | invalid,
                inf=inf_a | inf_b, invalid=invalid).items()}
            mant = reg(m, lut_product(u["ma"], u["mb"]), f"p{i}_mant")
            offset = reg(m, u["oa"] + u["ob"], f"p{i}_offset")
            sign = reg(m, u["sign"], f"p{i}_sign")
            inf = u["inf"] & ~u["nan"]
            specials.append(dict(nan=reg(m, u["nan"], f"p{i}_nan"),
                                 invalid=reg(m, u["invalid"], f"p{i}_invalid"),
                                 pinf=reg(m, inf & ~u["sign"], f"p{i}_pinf"),
                                 ninf=reg(m, inf & u["sign"], f"p{i}_ninf")))
            magnitude = reg(m, (mant << offset)[:self.lane_bits - 1], f"x{i}_mag")
            sign = reg(m, sign, f"x{i}_sign")
            value = Signal(signed(self.lane_bits), name=f"x{i}_value", reset_less=True)
            m.d.sync += value.eq(Mux(sign, -magnitude, magnitude))
            values.append(value)
        beat = {k: Cat(*(s[k] for s in specials)).any() for k in specials[0]}
        return values, beat, 3

    def _int_lanes(self, m):
        """MXINT8: signed products (cycle 3), no specials."""
        values, _ = multipliers(m, self.valid, [(self.a[i].as_signed(), self.w[i].as_signed())
                                                for i in range(self.n)], self.elem.width, self.elem.width)
        zero = Const(0, 1)
        return values, dict(nan=zero, invalid=zero, pinf=zero, ninf=zero), self.lane_stages

    # -------------------------------------------------------------------------------- blocks

    def elaborate(self, platform):
        m = Module()
        terms, special, special_stage = (self._int_lanes if self.is_int else self._float_lanes)(m)
        for level in range(self.tree_levels):
            pairs = [terms[i:i + 2] for i in range(0, len(terms), 2)]
            terms = [Signal(signed(self.lane_bits + level + 1), name=f"sum{level}_{i}",
                            reset_less=True) for i in range(len(pairs))]
            m.d.sync += [t.eq(sum(p)) for t, p in zip(terms, pairs)]
        beat = terms[0]
        stage = self.lane_stages + self.tree_levels  # the beat's sum is valid here
        special = {k: delay(m, v, stage - special_stage, f"beat_{k}", reset_less=True)
                   for k, v in special.items()}
        if self.beat_sums:
            m.d.comb += [self.result.value.eq(beat),
                         *[getattr(self.result, k).eq(v) for k, v in special.items()],
                         self.result_valid.eq(delay(m, self.valid, stage, "valid_x"))]
            return m

        # Scales: registered with the operands, reduced to an exponent sum and a NaN bit.
        sa = delay(m, self.a_side, 1, "a_side_in", reset_less=True)
        sw = delay(m, self.w_side, 1, "w_side_in", reset_less=True)
        scale_sum = delay(m, sa + sw, stage - 1, "scale_sum", reset_less=True)
        scale_nan = delay(m, (sa == SCALE_NAN) | (sw == SCALE_NAN), stage - 1, "scale_nan",
                          reset_less=True)
        valid = delay(m, self.valid, stage, "valid_x")
        last = delay(m, self.valid & self.last, stage, "last_x")

        # Block accumulator: exact; on a block's last beat (or a `last` beat) the block leaves.
        acc_bits = self.block_acc_bits
        acc = Signal(signed(acc_bits), name="block_acc")
        count = Signal(range(self.beats_per_block), name="block_beat")
        flags = {k: Signal(name=f"block_{k}") for k in special}
        total = Signal(signed(acc_bits), name="block_total")
        m.d.comb += total.eq(acc + beat)
        end = count == self.beats_per_block - 1
        new = {k: flags[k] | special[k] for k in flags}
        blk = {k: Signal(name=f"blk_{k}", reset_less=True) for k in list(flags) + ["scale_nan", "bad"]}
        blk_sum = Signal(signed(acc_bits), name="blk_sum", reset_less=True)
        blk_scale = Signal(9, name="blk_scale", reset_less=True)
        blk_valid = Signal(name="blk_valid")
        blk_last = Signal(name="blk_last")
        with m.If(valid):
            with m.If(end | last):
                m.d.sync += [acc.eq(0), count.eq(0), blk_sum.eq(total), blk_scale.eq(scale_sum),
                             blk["scale_nan"].eq(scale_nan), blk["bad"].eq(last & ~end)]
                m.d.sync += [flags[k].eq(0) for k in flags] + [blk[k].eq(new[k]) for k in flags]
            with m.Else():
                m.d.sync += [acc.eq(total), count.eq(count + 1)]
                m.d.sync += [flags[k].eq(new[k]) for k in flags]
        m.d.sync += [blk_valid.eq(valid & (end | last)), blk_last.eq(last)]

        # The block's value: sign/magnitude, then one rounding to FP32 with the scales applied.
        sign = reg(m, blk_sum[-1], "out_sign")
        magnitude = reg(m, Mux(blk_sum[-1], -blk_sum, blk_sum)[:acc_bits], "out_mag")
        exp = Signal(EXP_SHAPE, name="out_exp", reset_less=True)
        m.d.sync += exp.eq(blk_scale + (self.lsb_exp - 2 * SCALE_BIAS))
        both_inf = blk["pinf"] & blk["ninf"]
        f = {k: reg(m, v, f"out_{k}") for k, v in dict(
            nan=blk["nan"] | blk["scale_nan"] | both_inf | blk["bad"],
            inf=blk["pinf"] | blk["ninf"], ninf=blk["ninf"],
            flag=blk["invalid"] | both_inf | blk["bad"]).items()}
        bits, overflow = round_fp32(m, magnitude, exp, sign, 0, nan=f["nan"], inf=f["inf"],
                                    inf_sign=f["ninf"], lz_split=OUT_LZ_SPLIT, name="blk")
        flag = overflow | delay(m, f["flag"], self.round_stages, "blk_flag", reset_less=True)
        block_bits, block_flag = reg(m, bits, "block_bits"), reg(m, flag, "block_flag")
        block_valid = delay(m, blk_valid, 2 + self.round_stages, "block_valid")
        block_last = delay(m, blk_valid & blk_last, 2 + self.round_stages, "block_last")
        self._accumulate_blocks(m, block_bits, block_flag, block_valid, block_last)
        return m

    # --------------------------------------------------------------------------------- tiles

    def _accumulate_blocks(self, m, value, value_flag, valid, last):
        """Round-robin FP32 partial sums over a tile's blocks (block j into slot j mod L, slots
        start at -0.0), then their sum in index order; publishes the tile's result."""
        add = FP32_ADD_LATENCY
        n_slots = self.lanes
        slot = Signal(range(n_slots), name="slot")
        full = Signal(name="slots_full")  # this tile already issued L blocks: slots hold its sums
        with m.If(valid):
            with m.If(last):
                m.d.sync += [slot.eq(0), full.eq(0)]
            with m.Else():
                m.d.sync += [slot.eq(Mux(slot == n_slots - 1, 0, slot + 1)),
                             full.eq(full | (slot == n_slots - 1))]
        stored = Array(Signal(33, name=f"slot{j}", reset_less=True) for j in range(n_slots))
        wb_valid = Signal(name="wb_valid")  # the adder's write-back of a slot
        wb_slot = Signal(range(n_slots), name="wb_slot")
        wb = Signal(33, name="wb")  # (flag, bits)
        partial = Signal(33, name="partial")  # the slot this block adds to
        bypass = wb_valid & (wb_slot == slot)  # written back this very cycle
        m.d.comb += partial.eq(Mux(~full, FP32_NEG_ZERO, Mux(bypass, wb, stored[slot])))
        x, y, y_flag = reg(m, partial, "acc_x"), reg(m, value, "acc_y"), reg(m, value_flag, "acc_yf")
        total, add_flag = fp32_add(m, x[:32], y, name="acc")
        flags_in = delay(m, x[32] | y_flag, add, "acc_fin", reset_less=True)
        m.d.comb += [wb.eq(Cat(total, add_flag | flags_in)),
                     wb_valid.eq(delay(m, valid, 1 + add, "wb_valid_d")),
                     wb_slot.eq(delay(m, slot, 1 + add, "wb_slot_d", reset_less=True))]
        wb_last = delay(m, last, 1 + add, "wb_last")
        wb_full = delay(m, full, 1 + add, "wb_full", reset_less=True)
        with m.If(wb_valid):
            m.d.sync += stored[wb_slot].eq(wb)

        # Snapshot when the tile's last block is written back; unused slots read -0.0.
        snap = []
        for j in range(n_slots):
            used = wb_full | (j <= wb_slot)
            snap.append(reg(m, Mux(used, Mux(wb_slot == j, wb, stored[j]), FP32_NEG_ZERO),
                            f"snap{j}"))
        snap_valid = reg(m, wb_valid & wb_last, "snap_valid", reset_less=False)
        bits, flag = snap[0][:32], snap[0][32]
        for j in range(1, n_slots):
            later = delay(m, snap[j], (j - 1) * add, f"snap{j}_d", reset_less=True)
            s, f = fp32_add(m, bits, later[:32], name=f"sum{j}")
            flag = f | delay(m, flag | later[32], add, f"sum{j}_fin", reset_less=True)
            bits = s
        out_valid = delay(m, snap_valid, (n_slots - 1) * add, "out_valid")

        result = Signal(32, name="result_reg", reset_less=True)  # held until the next tile
        m.d.comb += self.result.eq(result)
        with m.If(out_valid):
            m.d.sync += result.eq(bits)
        m.d.sync += [self.result_valid.eq(out_valid), self.overflow.eq(out_valid & flag)]
