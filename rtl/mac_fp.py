"""The `fp` PE kind: N floating-point code pairs per beat, exact products, FP32 tile results.

Same port contract as rtl.mac_int.IntMac: `a`/`w` = N element codes (unsigned, the raw bits of
`act_format` / `weight_format`), `valid`, `last` in; `result` (FP32 bits), `result_valid`,
`overflow` out; `latency` cycles from a beat at `a`/`w` to `result` for the beat marked `last`.
`result` holds its value until the next tile's result replaces it.

The bit-exact model is golden.fp_mac (`fp_mac_exact`, `fp_mac_fp32`), which also states the
order of operations and the special-value rules; the short version:

Products (both modes): sign = sa ^ sb, exponent offsets added, mantissa product ma * mb of the
unpacked significands (hidden bit, subnormals with exponent 1), one LUT multiplier per lane
(4x4 bits for E4M3, 8x8 for bf16; partial products, deliberately not a DSP block). NaN operands,
inf * 0 (invalid) and +-inf are side-band classes; E4M3's NaN is S.1111.111 (no inf), E5M2 and
bf16 are IEEE-like, FP6/FP4 have neither.

accumulate = "exact": each lane's product is shifted to its place in a two's-complement fixed
point accumulator whose LSB weighs 2^(lsb_exp(a) + lsb_exp(b)); `acc_bits` =
rtl.formats.exact_sum_bits(a, b, max_products) (= golden.dot.accumulator_bits) holds any sum
of `max_products` products
(default MAX_TILE_PRODUCTS = 65536 per tile) exactly. A partial sum beyond it (only possible
in longer tiles) wraps and poisons the tile: NaN result and `overflow`. On `last` the sum is
rounded once to FP32 (RNE). Pipeline from `a`/`w`:
  1 input registers   2 unpacked operands   3 products   4 aligned magnitudes
  5 signed lane values   6.. adder tree (ceil(log2 N) levels)   then accumulate
  then: sign/magnitude, the rounding stages (rtl.fp32.round_fp32: a leading-zero count
  registered every OUT_LZ_SPLIT steps, shift amounts, shift, round), the result register.
  E4M3 x E4M3, N = 2: 53-bit accumulator, latency 14.

accumulate = "fp32": every addition is an FP32 RNE addition (rtl.fp32.fp32_add, pipelined
FP32_ADD_LATENCY = A deep). Products are rounded to FP32 (exact but for bf16 x bf16); the N of
a beat are summed by a pairwise tree of adders; beats go round-robin into L = A + 1 partial sums
(beat b of the tile into slot b mod L, each slot starting at +0.0), because one FP32 addition
per cycle cannot close a one-cycle loop (the loop is an operand register and the adder); on
`last` the slots are summed in index order (((s0 + s1) + s2) + ...). Pipeline: 1 input
registers, 2 unpacked, 3 products, the rounding stages + a register (FP32 products),
ceil(log2 N) * A (beat tree), 1 + A (accumulation), 1 snapshot of the slots, (L - 1) * A (slot
sum), the result register. A = 6 (unpack and order, align and add, leading zeros, shift
amounts, shift, round and pack), L = 7; E4M3 x E4M3, N = 2: latency 58.

`overflow` pulses with `result_valid` when the tile raised FP32 overflow (a finite value rounded
to +-inf) or an invalid operation (inf * 0, inf + -inf) or, in exact mode, exceeded the
accumulator bound; NaN operands propagate quietly. The array keeps it as a sticky flag.
"""
from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .accumulator import outside_signed_range
from .formats import FLOAT_FORMATS, exact_sum_bits, float_format
from .fp32 import EXP_SHAPE, FP32_ADD_LATENCY, fp32_add, reg, round_fp32, round_latency
from .pipeline import delay

ACCUMULATE_MODES = ("exact", "fp32")
FP_FORMATS = tuple(FLOAT_FORMATS)
MAX_TILE_PRODUCTS = 1 << 16
# The exact mode's output rounding registers its leading-zero count every OUT_LZ_SPLIT steps.
OUT_LZ_SPLIT = 2
# Special classes of the exact mode's products, kept beside the fixed-point sum.
SPECIAL_CLASSES = ("nan", "invalid", "pinf", "ninf")


def lut_product(a, b):
    """a * b of unsigned significands (at most 8 x 8 bits here) as a sum of partial products:
    synthesis builds it from LUTs and carry chains instead of a DSP block, whose placement far
    from the logic costs more than these small products."""
    width = len(a) + len(b)
    terms = [Mux(b[j], a, 0) << j for j in range(len(b))]
    while len(terms) > 1:  # a balanced adder tree
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0][:width]


def unpack(code, fmt):
    """(sign, significand, exponent offset, nan, inf) of one element code of `fmt`: the value is
    (-1)^sign * significand * 2^(fmt.lsb_exp + offset); specials have a zero significand."""
    man, exp_bits = fmt.man_bits, fmt.exp_bits
    frac, biased, sign = code[:man], code[man:man + exp_bits], code[fmt.width - 1]
    normal = biased.any()
    if fmt.has_inf:  # IEEE-like: all-ones exponent is inf (zero fraction) or NaN
        nan, inf = biased.all() & frac.any(), biased.all() & ~frac.any()
    elif fmt.has_nan:  # E4M3: only S.1111.111 is NaN
        nan, inf = biased.all() & frac.all(), Const(0, 1)
    else:
        nan, inf = Const(0, 1), Const(0, 1)
    significand = Mux(nan | inf, 0, Cat(frac, normal))
    offset = Mux(normal, biased - 1, 0)[:exp_bits]
    return sign, significand, offset, nan, inf


class ExactSum:
    """The exact mode's running sum (golden.fp_mac.exact_result): a two's-complement fixed-point
    `value` of `bits` bits whose LSB weighs 2^lsb_exp, the special classes of the products in it
    (nan, invalid, pinf, ninf) and `bound`: a partial sum left the range and wrapped (the
    result is NaN). All zero is the empty sum."""

    def __init__(self, bits, lsb_exp):
        self.bits, self.lsb_exp = bits, lsb_exp
        self.layout = data.StructLayout({"value": signed(bits), "bound": 1,
                                         **{name: 1 for name in SPECIAL_CLASSES}})
        self.round_stages = round_latency(bits, OUT_LZ_SPLIT)
        self.round_latency = 1 + self.round_stages

    def add(self, m, value, flags, beat, beat_flags, name="exact"):
        """value + beat, combinational in `m`: (the sum wrapped to `bits`, the flags after it:
        each class OR the beat's, `bound` also set when the exact sum leaves the range)."""
        width = self.bits
        exact = Signal(signed(width + 1), name=name)
        m.d.comb += exact.eq(value + beat)
        bound = outside_signed_range(exact[width - 1:])
        new = {k: flags[k] | beat_flags[k] for k in SPECIAL_CLASSES}
        new["bound"] = flags["bound"] | bound
        if "bound" in beat_flags:
            new["bound"] = new["bound"] | beat_flags["bound"]
        return exact[:width], new

    def add_records(self, m, total, beat, name="sum"):
        """`add` for records (`layout`; the beat a `beat_layout` or a record): a new record."""
        value, new = self.add(m, total.value, _flags(total), beat.value, _flags(beat),
                              f"{name}_exact")
        out = Signal(self.layout, name=name)
        m.d.comb += [out.value.eq(value), *[getattr(out, k).eq(v) for k, v in new.items()]]
        return out

    def round(self, m, value, flags, name, scale=None, scale_nan=0):
        """(FP32 bits, flag) of a sum (`value` and its `flags`), `round_latency` cycles later:
        sign/magnitude, then one RNE rounding; NaN for a NaN class, +inf meeting -inf or
        `bound`, else +-inf for an infinite class. Flag: invalid | both infinities | bound |
        rounded to +-inf. `scale` (a signed exponent, MX block scales) multiplies the sum by
        2^scale exactly before the rounding; `scale_nan` makes the result NaN quietly."""
        sign = reg(m, value[-1], f"{name}_sign")
        magnitude = reg(m, Mux(value[-1], -value, value)[:self.bits], f"{name}_mag")
        f = {k: reg(m, v, f"{name}_{k}") for k, v in flags.items()}
        exp = self.lsb_exp
        if scale is not None:
            exp = Signal(EXP_SHAPE, name=f"{name}_exp", reset_less=True)
            m.d.sync += exp.eq(scale + self.lsb_exp)
            f["nan"] = f["nan"] | reg(m, scale_nan, f"{name}_scale_nan")
        both_inf = f["pinf"] & f["ninf"]
        bits, overflow = round_fp32(m, magnitude, exp, sign, 0,
                                    nan=f["nan"] | both_inf | f["bound"],
                                    inf=f["pinf"] | f["ninf"], inf_sign=f["ninf"],
                                    lz_split=OUT_LZ_SPLIT, name=name)
        flag = overflow | delay(m, f["invalid"] | both_inf | f["bound"], self.round_stages,
                                f"{name}_flag", reset_less=True)
        return bits, flag

    def round_record(self, m, total, name, scale=None, scale_nan=0):
        """`round` of a record."""
        return self.round(m, total.value, _flags(total), name, scale, scale_nan)


def _flags(record):
    """The classes (and `bound`, when it has one) of a record or beat view, as a dict."""
    names = [*SPECIAL_CLASSES, "bound"] if "bound" in record.shape().members else SPECIAL_CLASSES
    return {k: getattr(record, k) for k in names}


class FpMac(wiring.Component):
    """Accumulates, over the beats of a tile, the N products of each beat; FP32 result per tile.
    With `beat_sums` it does not accumulate: `result` is every beat's sum (`beat_layout`,
    `result_valid` per beat): exact mode, the exact fixed-point sum and classes (`latency` =
    5 + tree levels; accumulate with `sum`); fp32 mode, the pairwise tree of the FP32 products
    and its flag. For arrays that accumulate elsewhere (rtl.ws_array)."""

    def __init__(self, n, act_format, weight_format, accumulate="exact",
                 max_products=MAX_TILE_PRODUCTS, beat_sums=False):
        if accumulate not in ACCUMULATE_MODES:
            raise ValueError(f"accumulate {accumulate!r}; allowed: {', '.join(ACCUMULATE_MODES)}")
        self.n, self.accumulate, self.beat_sums = n, accumulate, beat_sums
        self.act_format, self.weight_format = act_format, weight_format
        self.fa, self.fb = float_format(act_format), float_format(weight_format)
        self.tree_levels = ceil_log2(n)
        self.product_bits = self.fa.sig_bits + self.fb.sig_bits
        self.max_offset = (1 << self.fa.exp_bits) - 2 + (1 << self.fb.exp_bits) - 2
        self.lsb_exp = self.fa.lsb_exp + self.fb.lsb_exp
        if accumulate == "exact":
            self.max_products = max_products
            # One lane's magnitude, then the signed sums of the tree and the accumulator.
            self.lane_bits = self.product_bits + self.max_offset
            self.acc_bits = max(exact_sum_bits(self.fa, self.fb, max_products),
                                self.lane_bits + self.tree_levels + 2)
            self.lanes = None
            self.sum = ExactSum(self.acc_bits, self.lsb_exp)
            self.beat_layout = data.StructLayout({
                "value": signed(self.lane_bits + 1 + self.tree_levels),
                **{name: 1 for name in SPECIAL_CLASSES}})
            self.round_stages = self.sum.round_stages
            self.latency = 5 + self.tree_levels + (
                0 if beat_sums else 1 + self.sum.round_latency + 1)
        else:
            self.max_products = self.acc_bits = None
            add = FP32_ADD_LATENCY
            self.lanes = 1 + add  # operand register + adder: the accumulation loop's length
            self.round_stages = round_latency(self.product_bits)
            self.beat_layout = data.StructLayout({"bits": 32, "flag": 1})
            self.latency = 3 + self.round_stages + 1 + self.tree_levels * add + (
                0 if beat_sums else 1 + add + 1 + (self.lanes - 1) * add + 1)
        super().__init__({
            "a": In(data.ArrayLayout(unsigned(self.fa.width), n)),
            "w": In(data.ArrayLayout(unsigned(self.fb.width), n)),
            "valid": In(1), "last": In(1),
            "result": Out(self.beat_layout if beat_sums else unsigned(32)),
            "result_valid": Out(1), "overflow": Out(1),
        })

    # -----------------------------------------------------------------------------------------

    def _products(self, m):
        """Stages 1-3: input registers, unpacked operands, products. Per lane: (sign, mantissa
        product, exponent offset sum, nan, inf, invalid) after 3 cycles."""
        a = delay(m, self.a, 1, "a_in", reset_less=True)
        w = delay(m, self.w, 1, "w_in", reset_less=True)
        lanes = []
        for i in range(self.n):
            sa, ma, oa, nan_a, inf_a = unpack(a[i], self.fa)
            sb, mb, ob, nan_b, inf_b = unpack(w[i], self.fb)
            zero_a = ~ma.any() & ~nan_a & ~inf_a
            zero_b = ~mb.any() & ~nan_b & ~inf_b
            invalid = (inf_a & zero_b) | (inf_b & zero_a)
            u = {k: reg(m, v, f"u{i}_{k}") for k, v in dict(
                sign=sa ^ sb, ma=ma, mb=mb, oa=oa, ob=ob, nan=nan_a | nan_b | invalid,
                inf=inf_a | inf_b, invalid=invalid).items()}
            p = dict(sign=reg(m, u["sign"], f"p{i}_sign"),
                     mant=reg(m, lut_product(u["ma"], u["mb"]), f"p{i}_mant"),
                     offset=reg(m, u["oa"] + u["ob"], f"p{i}_offset"),
                     nan=reg(m, u["nan"], f"p{i}_nan"),
                     inf=reg(m, u["inf"] & ~u["nan"], f"p{i}_inf"),
                     invalid=reg(m, u["invalid"], f"p{i}_invalid"))
            lanes.append(p)
        return lanes

    def elaborate(self, platform):
        m = Module()
        lanes = self._products(m)
        valid = delay(m, self.valid, 3, "valid_p", reset_less=False)
        last = delay(m, self.valid & self.last, 3, "last_p", reset_less=False)
        if self.accumulate == "exact":
            self._exact(m, lanes, valid, last)
        else:
            self._fp32(m, lanes, valid, last)
        return m

    # ----------------------------------------------------------------------------- exact mode

    def _exact(self, m, lanes, valid, last):
        beat, special = self._exact_beat(m, lanes)
        cycles = 2 + self.tree_levels
        valid = delay(m, valid, cycles, "valid_x", reset_less=False)
        last = delay(m, last, cycles, "last_x", reset_less=False)
        if self.beat_sums:
            m.d.comb += [self.result.value.eq(beat), self.result_valid.eq(valid),
                         *[getattr(self.result, k).eq(v) for k, v in special.items()]]
            return

        # Accumulate; on `last` the tile's sum and classes go to the output stage.
        width = self.acc_bits
        acc = Signal(signed(width))
        flags = {name: Signal(name=f"tile_{name}")  # sticky over the tile
                 for name in (*SPECIAL_CLASSES, "bound")}
        total, new = self.sum.add(m, acc, flags, beat, special)
        final = Signal(signed(width))
        final_flags = {name: Signal(name=f"final_{name}") for name in flags}
        with m.If(last):
            m.d.sync += [acc.eq(0), final.eq(total)]
            m.d.sync += [flags[k].eq(0) for k in flags] + [final_flags[k].eq(new[k]) for k in flags]
        with m.Elif(valid):
            m.d.sync += [acc.eq(total)] + [flags[k].eq(new[k]) for k in flags]
        final_valid = reg(m, last, "final_valid", reset_less=False)

        # Output: sign/magnitude, then one rounding to FP32.
        bits, flag = self.sum.round(m, final, final_flags, "out")
        out_valid = delay(m, final_valid, self.sum.round_latency, "out_valid", reset_less=False)
        self._publish(m, bits, flag, out_valid)

    def _exact_beat(self, m, lanes):
        """Stages 4, 5 and the adder tree: the beat's exact sum and its special classes (a
        dict), 2 + tree_levels cycles after the products."""
        terms, classes = [], {name: [] for name in SPECIAL_CLASSES}
        for i, p in enumerate(lanes):
            magnitude = reg(m, (p["mant"] << p["offset"])[:self.lane_bits], f"x{i}_mag")
            sign = reg(m, p["sign"], f"x{i}_sign")
            value = Signal(signed(self.lane_bits + 1), name=f"x{i}_value")
            m.d.sync += value.eq(Mux(sign, -magnitude, magnitude))
            terms.append(value)
            classes["nan"].append(p["nan"])
            classes["invalid"].append(p["invalid"])
            classes["pinf"].append(p["inf"] & ~p["sign"])
            classes["ninf"].append(p["inf"] & p["sign"])
        cycles = 2 + self.tree_levels
        special = {name: delay(m, Cat(*bits).any(), cycles, f"beat_{name}", reset_less=True)
                   for name, bits in classes.items()}
        for level in range(self.tree_levels):
            pairs = [terms[i:i + 2] for i in range(0, len(terms), 2)]
            terms = [Signal(signed(self.lane_bits + 2 + level), name=f"sum{level}_{i}")
                     for i in range(len(pairs))]
            m.d.sync += [t.eq(sum(p)) for t, p in zip(terms, pairs)]
        return terms[0], special

    def _publish(self, m, bits, flag, valid):
        result = Signal(32, name="result_reg", reset_less=True)  # held until the next tile
        m.d.comb += self.result.eq(result)
        with m.If(valid):
            m.d.sync += result.eq(bits)
        m.d.sync += [self.result_valid.eq(valid), self.overflow.eq(valid & flag)]

    # ------------------------------------------------------------------------------ fp32 mode

    def _fp32(self, m, lanes, valid, last):
        add = FP32_ADD_LATENCY
        values = []
        for i, p in enumerate(lanes):
            bits, overflow = round_fp32(m, p["mant"], p["offset"] + self.lsb_exp, p["sign"],
                                        p["sign"], nan=p["nan"], inf=p["inf"], inf_sign=p["sign"],
                                        name=f"prod{i}")
            invalid = delay(m, p["invalid"], self.round_stages, f"prod{i}_inv", reset_less=True)
            values.append((reg(m, bits, f"prod{i}_bits"),
                           reg(m, overflow | invalid, f"prod{i}_flag")))
        cycles = self.round_stages + 1
        # Pairwise tree over the lanes.
        for level in range(self.tree_levels):
            nxt = []
            for i in range(0, len(values) - 1, 2):
                (x, fx), (y, fy) = values[i], values[i + 1]
                s, f = fp32_add(m, x, y, name=f"tree{level}_{i // 2}")
                flags_in = delay(m, fx | fy, add, f"tree{level}_{i // 2}_fin", reset_less=True)
                nxt.append((s, f | flags_in))
            if len(values) % 2:
                x, fx = values[-1]
                nxt.append((delay(m, x, add, f"tree{level}_pass", reset_less=True),
                            delay(m, fx, add, f"tree{level}_passf", reset_less=True)))
            values = nxt
            cycles += add
        beat, beat_flag = values[0]
        valid = delay(m, valid, cycles, "valid_t", reset_less=False)
        last = delay(m, last, cycles, "last_t", reset_less=False)
        if self.beat_sums:
            m.d.comb += [self.result.bits.eq(beat), self.result.flag.eq(beat_flag),
                         self.result_valid.eq(valid)]
            return

        # Round-robin partial sums: beat b of a tile adds into slot b mod L, L = 1 + adder latency.
        n_slots = self.lanes
        slot = Signal(range(n_slots), name="slot")
        full = Signal(name="slots_full")  # this tile already issued L beats: slots hold its sums
        with m.If(valid):
            with m.If(last):
                m.d.sync += [slot.eq(0), full.eq(0)]
            with m.Else():
                m.d.sync += [slot.eq(Mux(slot == n_slots - 1, 0, slot + 1)),
                             full.eq(full | (slot == n_slots - 1))]
        stored = Array(Signal(33, name=f"slot{j}") for j in range(n_slots))
        wb_valid = Signal(name="wb_valid")  # the adder's write-back of a slot
        wb_slot = Signal(range(n_slots), name="wb_slot")
        wb_bits = Signal(32, name="wb_bits")
        wb_flag = Signal(name="wb_flag")
        partial = Signal(33, name="partial")  # (flag, bits) of the slot this beat adds to
        bypass = wb_valid & (wb_slot == slot)  # written back this very cycle
        m.d.comb += partial.eq(Mux(~full, 0, Mux(bypass, Cat(wb_bits, wb_flag), stored[slot])))
        # Operand registers: the slot read stays out of the adder's first stage; so a slot's
        # next beat comes L = A + 1 beats later.
        x, y, y_flag = reg(m, partial, "acc_x"), reg(m, beat, "acc_y"), reg(m, beat_flag, "acc_yf")
        total, add_flag = fp32_add(m, x[:32], y, name="acc")
        flags_in = delay(m, x[32] | y_flag, add, "acc_fin", reset_less=True)
        m.d.comb += [wb_bits.eq(total),
                     wb_flag.eq(add_flag | flags_in),
                     wb_valid.eq(delay(m, valid, 1 + add, "wb_valid_d", reset_less=False)),
                     wb_slot.eq(delay(m, slot, 1 + add, "wb_slot_d", reset_less=True))]
        wb_last = delay(m, last, 1 + add, "wb_last", reset_less=False)
        wb_full = delay(m, full, 1 + add, "wb_full", reset_less=True)
        with m.If(wb_valid):
            m.d.sync += stored[wb_slot].eq(Cat(wb_bits, wb_flag))

        # Snapshot of the tile's slots when its last beat's sum is written back; unused slots of
        # a short tile read +0.0.
        snap = []
        for j in range(n_slots):
            used = wb_full | (j <= wb_slot)
            value = Mux(wb_slot == j, Cat(wb_bits, wb_flag), stored[j])
            snap.append(reg(m, Mux(used, value, 0), f"snap{j}"))
        snap_valid = reg(m, wb_valid & wb_last, "snap_valid", reset_less=False)

        # (((s0 + s1) + s2) + ...), each slot delayed to meet the running sum.
        bits, flag = snap[0][:32], snap[0][32]
        for j in range(1, n_slots):
            later = delay(m, snap[j], (j - 1) * add, f"snap{j}_d", reset_less=True)
            s, f = fp32_add(m, bits, later[:32], name=f"sum{j}")
            flag = f | delay(m, flag | later[32], add, f"sum{j}_fin", reset_less=True)
            bits = s
        out_valid = delay(m, snap_valid, (n_slots - 1) * add, "out_valid", reset_less=False)
        self._publish(m, bits, flag, out_valid)
