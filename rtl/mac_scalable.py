"""The `scalable` PE kind: a precision-scalable (Bit Fusion style) integer MAC unit.

Ports (same contract as rtl.mac_int.IntMac): `a` = N activation lane words, `w` = N weight lane
elements, `valid`, `last` in; `result`, `result_valid`, `overflow` out. Per lane:

  a[i]       unsigned(8): the activation word, read as the weight's mode says
  w[i].bits  unsigned(8): the weight word
  w[i].mode  unsigned(3): what the lane computes this beat (it travels with the weight, so it
             may change per lane and per beat):
     0 INT8      a * w (signed bytes)                                   1 MAC
     1 INT4      a[3:0]*w[3:0] + a[7:4]*w[7:4] (signed nibbles)        2 MACs
     2 INT2      sum over f < 4 of a[2f+1:2f]*w[2f+1:2f] (signed)       4 MACs
     3 OFF       0
     4..7 INT16 pieces (int16=True): bit 0 = `a` is the signed high byte of a 16-bit activation
                 (else its unsigned low byte), bit 1 = the same for `w`; the lane adds
                 a' * w' * 2^(8 * (bit0 + bit1)). An INT16 x INT16 MAC is four beats of one lane
                 (ll, hl, lh, hh): x * y = xl*yl + xh*yl*2^8 + xl*yh*2^8 + xh*yh*2^16 with xh the
                 signed high and xl the unsigned low byte; golden.scalable.int16_schedule lays an
                 INT16 dot product out that way. With int16=False codes 4..7 are OFF.
Bit-exact reference: golden.scalable (built on golden.dot.subword_products: lane 0 = low bits).
Per beat the N lane values are summed exactly and accumulated into `acc_width` bits with the
wrap/saturate policy and overflow pulse of IntMac.

Sub-word parallel multiplier: one 18x18 signed multiply per lane (one ECP5 MULT18X18D) serves
every mode, sub-words packed so that the wanted dot product is one coefficient of P = A*B:
  INT4: A = a_lo*2^3 + a_hi*2^12, B = w_hi*2^3 + w_lo*2^12 (the weight's nibbles in reverse order):
        P = a_lo*w_hi*2^6 + (a_lo*w_lo + a_hi*w_hi)*2^15 + a_hi*w_lo*2^24.
  INT2: A = sum_f a_f*2^(5f), B = sum_f w_(3-f)*2^(5f): the coefficient of 2^15 is
        a_0*w_0 + a_1*w_1 + a_2*w_2 + a_3*w_3 (5-bit spacing is all 18 bits allow: top field at 15).
  Both sub-word modes put their dot product at bit 15 (SUB_SHIFT), so they share the output path.
  Signed fields, packed without adders: A is the exact signed sum, so a negative lower field
  borrows 1 from the field above; `_packed_bits` writes each field as (value - borrow) with
  borrow = sign of everything below (a 1-3 LUT-level chain, no carry chain) and fills the gaps
  with signs.
  Extraction: the terms below bit 15 form a signed remainder R, |R| < 2^14 (INT4: a_lo*w_hi*2^6
  in [-3584, 4096]; INT2: in [-6274, 12548]); rounding P to the nearest multiple of 2^15 removes
  it: dot = (P >> 15) + P[14] (kept mod 2^9 for INT4, whose dot lies in [-112, 128]). INT2 keeps
  only 5 bits, z = P[19:15], holding dot - P[14] in [-9, 16] mod 32: it is z - 32 when z >= 20
  (17..22 never occur). The "+ P[14]" is not an adder either: the lane passes P[14] on as a
  round bit, and each adder of the lane tree (and the accumulator) takes one as its carry-in,
  free on the FPGA carry chain (N lanes, N - 1 tree adders + 1 accumulator).
  INT8 and INT16 pieces use the same multiplier with 9-bit operands (sign- or zero-extended; a
  high INT16 byte shifted up 8 bits inside its operand, so P is the exact piece value). Without
  INT16 the 9-bit operands sit at bits 6 and 9, which puts INT8 products at bit 15 as well.
  OFF drives no operand select: A = B = 0.
The alternative, the multiplier for INT8 / INT16 only and LUT multipliers for the INT4 / INT2
sub-products (`LutSubwordMac` in benchmarks/scalable_int4.py, overriding `_products`), has the
same throughput and costs more LUTs on ECP5; see that benchmark.

Pipeline from the `a`/`w` ports (registers on both sides of the multiplier, like IntMac):
  1 input registers
  2 packed multiplier operands (synthesis moves them into the MULT18X18D input registers)
  3 product
  4 product retiming registers
  5 lane value (extraction, mode select) and round bit
  6.. adder tree, one register per level (ceil(log2 N) levels)
  last: accumulate; on a `last` beat the final sum goes to `result` and the accumulator restarts.
latency = 6 + ceil(log2 N); one beat per cycle.
"""
from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .accumulator import accumulate
from .pipeline import delay

OVERFLOW_POLICIES = ("wrap", "saturate")

LANE_WIDTH = 8
MODE_WIDTH = 3
MODE_INT8, MODE_INT4, MODE_INT2, MODE_OFF = 0, 1, 2, 3
MODE_INT16_LL, MODE_INT16_HL, MODE_INT16_LH, MODE_INT16_HH = 4, 5, 6, 7
MACS_PER_LANE = {MODE_INT8: 1, MODE_INT4: 2, MODE_INT2: 4}

ACT_ELEMENT = unsigned(LANE_WIDTH)
WEIGHT_ELEMENT = data.StructLayout({"bits": unsigned(LANE_WIDTH), "mode": unsigned(MODE_WIDTH)})

OPERAND_WIDTH = 18   # one ECP5 MULT18X18D
SUB_SHIFT = 15       # product bit where the INT4 and the INT2 dot products both sit
INT4_SPACING = 9
INT2_SPACING = 5
assert 3 * INT2_SPACING == SUB_SHIFT
LANE_STAGE = 5       # pipeline stage of the registered lane values (module docstring)


def _packed_bits(m, name, fields, width=OPERAND_WIDTH):
    """Signal of sum over fields of (signed field value) * 2^position, built without an adder.

    `fields`: (bits, position) pairs in increasing position, `bits` LSB first with the sign bit
    last. A negative field borrows 1 from the field above it, so each field is placed as
    (value - borrow), `borrow` being the sign of everything below it, and the gap above a field
    is filled with its sign; (x - b) keeps x's bits except that bit i flips when b is set and
    x[0..i-1] are all 0. Borrows stay within a lane word's few bits: small LUT logic, no carry
    chain.
    """
    out = [Const(0)] * width
    borrow, end = Const(0), 0
    for f, (bits, pos) in enumerate(fields):
        out[end:pos] = [borrow] * (pos - end)
        zeros = Const(1)
        for i, bit in enumerate(bits):
            out[pos + i] = bit ^ (borrow & zeros)
            nxt = Signal(name=f"{name}_zeros{f}_{i}")  # field bits 0..i all 0
            m.d.comb += nxt.eq(zeros & ~bit)
            zeros = nxt
        nxt = Signal(name=f"{name}_borrow{f}")
        m.d.comb += nxt.eq(bits[-1] | (borrow & zeros))  # (x - b) < 0: x < 0, or x == 0 and b
        borrow = nxt
        end = pos + len(bits)
    out[end:width] = [borrow] * (width - end)
    packed = Signal(width, name=name)
    m.d.comb += packed.eq(Cat(*out))
    return packed


def _select(m, name, cases, width=OPERAND_WIDTH):
    """AND-OR multiplexer: OR over (select, value) of (select & value), values sign-extended to
    `width` (selects one-hot, or all 0 for a 0 result). Written with AND gates, not a mux with a
    constant input, so that synthesis does not turn the "all selects 0" case into a synchronous
    reset of the operand registers: plain flip-flops can move into the MULT18X18D input
    registers (nmforge.fpga.dsp_pack)."""
    out = 0
    for k, (sel, value) in enumerate(cases):
        sel_sig, value_sig = Signal(name=f"{name}_sel{k}"), Signal(width, name=f"{name}_case{k}")
        value = Value.cast(value)
        m.d.comb += [sel_sig.eq(sel), value_sig.eq(value[:width] if len(value) > width else value)]
        out = out | (value_sig & sel_sig.replicate(width))
    return out


def _nibbles(word, width):
    return [[word[f * width + i] for i in range(width)] for f in range(LANE_WIDTH // width)]


class ScalableMac(wiring.Component):
    """Accumulates, per beat, the sum over the N lanes of each lane's mode-selected sub-word dot
    product (module docstring) on `acc_width` bits.

    `overflow` pulses on each accumulation whose exact sum falls outside the signed `acc_width`
    range; the policy then wraps or saturates. Latency: `latency` cycles from a beat at `a`/`w`
    to `result`/`result_valid` (for the beat marked `last`). One beat per cycle: per cycle and
    lane, 1 INT8, 2 INT4 or 4 INT2 MACs (or a quarter of an INT16 MAC).
    """

    # Packing plan (module docstring); tests/test_pe_scalable.py checks that it fits 18 bits.
    # bit of A, B where the 9-bit INT8 / INT16 operands start: with INT16 pieces at 0 (a high
    # byte moves up by 8 inside the operand), without them such that INT8 products land on the
    # same product bits as the INT4 / INT2 dot products (SUB_SHIFT): fewer output multiplexers.
    full_offsets_int16 = (0, 0)
    full_offsets_int8 = (6, 9)
    int4_offsets = (3, 3)   # bit of A, B where the INT4 fields start (sum = SUB_SHIFT - 9; each <= 4)
    int4_a_order = (0, 1)   # nibble of `a` at the low / high INT4 field of A (B: the other order)
    int2_a_order = (0, 1, 2, 3)  # field of `a` at each INT2 field of A (B: reversed)

    def __init__(self, n, acc_width, overflow="wrap", *, int16=True):
        assert overflow in OVERFLOW_POLICIES
        assert sum(self.int4_offsets) + INT4_SPACING == SUB_SHIFT
        self.n, self.acc_width = n, acc_width
        self.act_width = self.weight_width = LANE_WIDTH
        self.saturate = overflow == "saturate"
        self.int16 = bool(int16)
        self.full_offsets = self.full_offsets_int16 if self.int16 else self.full_offsets_int8
        # exact lane value: INT8 within +-2^14, INT16 pieces up to 2^30 (hh: -2^15 * -2^15)
        self.lane_width = 32 if self.int16 else 16
        assert max(self.full_offsets) + 9 + (8 if self.int16 else 0) <= OPERAND_WIDTH
        self.tree_levels = ceil_log2(n)
        self.latency = LANE_STAGE + 1 + self.tree_levels
        self.multipliers = n  # 18x18 multiplies (MULT18X18D on ECP5)
        super().__init__({
            "a": In(data.ArrayLayout(ACT_ELEMENT, n)),
            "w": In(data.ArrayLayout(WEIGHT_ELEMENT, n)),
            "valid": In(1), "last": In(1),
            "result": Out(signed(acc_width)), "result_valid": Out(1), "overflow": Out(1),
        })

    # -- one lane -----------------------------------------------------------------------------

    def _decode(self, m, mode, i):
        """Stage-1 mode decode: one-hot selects (all 0 for OFF) and the INT16 piece bits."""
        piece = mode[2] if self.int16 else Const(0)
        sel = {name: Signal(name=f"{name}{i}") for name in ("full", "int4", "int2", "a_high", "w_high")}
        m.d.comb += [
            sel["full"].eq((mode == MODE_INT8) | piece),
            sel["int4"].eq(mode == MODE_INT4), sel["int2"].eq(mode == MODE_INT2),
            sel["a_high"].eq(piece & mode[0]), sel["w_high"].eq(piece & mode[1]),
        ]
        return sel

    def _products(self, m, i, a, w, a9, w9, sel):
        """Stages 2..4 of lane i (stage-1 words `a`, `w`, 9-bit INT8 / INT16 operands `a9`,
        `w9`, selects `sel`); returns, at stage 4, the INT8 / INT16 product `full` (exact, INT16
        shifts included), the 9 product bits `ps` holding the INT4 / INT2 dot product from
        SUB_SHIFT up, and the round bit (None: `ps` is the exact signed dot product)."""
        fa, fb = self.full_offsets
        # INT16 pieces: a high byte moves up 8 bits inside its operand
        full_a = [(sel["full"] & ~sel["a_high"], a9 << fa), (sel["a_high"], a9 << (fa + 8))]
        full_b = [(sel["full"] & ~sel["w_high"], w9 << fb), (sel["w_high"], w9 << (fb + 8))]
        c4, d4 = self.int4_offsets
        an4, wn4, an2, wn2 = _nibbles(a, 4), _nibbles(w, 4), _nibbles(a, 2), _nibbles(w, 2)
        lo, hi = self.int4_a_order
        int4_a = _packed_bits(m, f"int4_a{i}", [(an4[lo], c4), (an4[hi], c4 + INT4_SPACING)])
        int4_b = _packed_bits(m, f"int4_b{i}", [(wn4[hi], d4), (wn4[lo], d4 + INT4_SPACING)])
        order = self.int2_a_order
        int2_a = _packed_bits(m, f"int2_a{i}", [(an2[f], INT2_SPACING * k) for k, f in enumerate(order)])
        int2_b = _packed_bits(m, f"int2_b{i}",
                              [(wn2[f], INT2_SPACING * k) for k, f in enumerate(reversed(order))])
        op_a = Signal(signed(OPERAND_WIDTH), name=f"op_a{i}", reset_less=True)
        op_b = Signal(signed(OPERAND_WIDTH), name=f"op_b{i}", reset_less=True)
        m.d.sync += [  # stage 2
            op_a.eq(_select(m, f"op_a{i}", full_a + [(sel["int4"], int4_a), (sel["int2"], int2_a)])),
            op_b.eq(_select(m, f"op_b{i}", full_b + [(sel["int4"], int4_b), (sel["int2"], int2_b)])),
        ]
        e_full = fa + fb
        full_width = 32 if self.int16 else 18
        lo_bit = min(e_full, SUB_SHIFT - 1)
        hi_bit = max(e_full + full_width, SUB_SHIFT + 9)
        product = Signal(hi_bit - lo_bit, name=f"product{i}", reset_less=True)
        m.d.sync += product.eq((op_a * op_b)[lo_bit:hi_bit])  # stage 3
        p = delay(m, product, 1, f"retimed{i}_", reset_less=True)  # stage 4
        full = p[e_full - lo_bit:e_full - lo_bit + full_width].as_signed()
        round_bit = p[SUB_SHIFT - 1 - lo_bit]
        if e_full != SUB_SHIFT:  # in INT8 / INT16 modes P[SUB_SHIFT - 1] is a product bit
            round_bit = round_bit & ~delay(m, sel["full"], 3, f"full_d{i}_", reset_less=True)
        return full, p[SUB_SHIFT - lo_bit:SUB_SHIFT - lo_bit + 9], round_bit

    def _lane(self, m, i, a, w, mode):
        """Stages 1..5 of lane i: returns the stage-5 registered (lane value, round bit)."""
        sel = self._decode(m, mode, i)
        # INT8 reads both bytes signed; an INT16 piece reads a high byte signed, a low one unsigned
        a_signed = (mode == MODE_INT8) | sel["a_high"]
        w_signed = (mode == MODE_INT8) | sel["w_high"]
        a9, w9 = Signal(signed(9), name=f"a9_{i}"), Signal(signed(9), name=f"w9_{i}")
        m.d.comb += [a9.eq(Cat(a, a[7] & a_signed)), w9.eq(Cat(w, w[7] & w_signed))]
        full, ps, round_bit = self._products(m, i, a, w, a9, w9, sel)
        s = {k: delay(m, v, 3, f"{k}{i}_", reset_less=True) for k, v in sel.items()}  # selects at stage 4
        if round_bit is None:
            sub = ps.as_signed()
        else:
            # INT4: the 9-bit field is the signed sum less the round bit, in [-113, 128].
            # INT2: the 5-bit field z holds the sum less the round bit, in [-9, 16], mod 32:
            # negative iff z >= 20 (z in 17..22 never occurs).
            sign2 = ps[4] & (ps[3] | ps[2])
            sub = Cat(ps[0:5], Mux(s["int4"], ps[5:9], sign2.replicate(4)),
                      Mux(s["int4"], ps[8], sign2)).as_signed()
        lane = Signal(signed(self.lane_width), name=f"lane{i}", reset_less=True)
        m.d.sync += lane.eq(Mux(s["full"], full, sub))
        if round_bit is None:
            return lane, None
        lane_round = Signal(name=f"lane_round{i}", reset_less=True)
        m.d.sync += lane_round.eq(round_bit)
        return lane, lane_round

    # -- the unit -----------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        a, w = delay(m, self.a, 1, "a_in", reset_less=True), delay(m, self.w, 1, "w_in", reset_less=True)
        lanes = [self._lane(m, i, a[i], w[i].bits, w[i].mode) for i in range(self.n)]
        terms = [t for t, _ in lanes]
        carries = [c for _, c in lanes if c is not None]
        # Adder tree; each adder takes one pending round bit as its carry-in (free on FPGA carry
        # chains); the rest wait a register per level, the last one goes to the accumulator.
        for level in range(self.tree_levels):
            pairs = [terms[i:i + 2] for i in range(0, len(terms), 2)]
            terms = [Signal(signed(self.lane_width + level + 1), name=f"sum{level}_{i}", reset_less=True)
                     for i in range(len(pairs))]
            for t, p in zip(terms, pairs):
                if len(p) == 2 and carries:
                    m.d.sync += t.eq(p[0] + p[1] + carries.pop())
                else:
                    m.d.sync += t.eq(sum(p))
            carries = [delay(m, c, 1, f"carry{level}_", reset_less=True) for c in carries]
        beat_sum = terms[0]
        assert len(carries) <= 1
        carry_in = carries[0] if carries else None
        valid = delay(m, self.valid, LANE_STAGE + self.tree_levels, "valid", reset_less=False)
        last = delay(m, self.valid & self.last, LANE_STAGE + self.tree_levels, "last", reset_less=False)

        result = Signal.like(self.result, reset_less=True)
        m.d.comb += self.result.eq(result)
        accumulate(m, beat_sum, valid, last, result, self.result_valid, self.overflow,
                   saturate=self.saturate, carry_in=carry_in)
        return m
