"""FP32 datapath blocks for the floating-point PE kinds (rtl/mac_fp.py).

All arithmetic is IEEE 754 binary32 with round-to-nearest-even, gradual underflow (subnormals in
and out, no flush to zero) and overflow to +-inf; every NaN result is the quiet NaN 0x7FC00000.

- `any_below`: a set bit below a variable position (the sticky bit of a right shift).
- `round_fp32`: (-1)^sign * mag * 2^exp, mag an unsigned integer of any width and exp a signed
  exponent (variable or constant), rounded once to FP32. Used for exact products (fp32 mode), the
  wide fixed-point accumulator (exact mode) and inside the adder.
- `fp32_add`: a pipelined binary32 adder (FP32_ADD_LATENCY register stages).

Blocks are built into a caller's Module in its sync domain; each returns its outputs and says how
many register stages it inserted, so callers delay their side-band signals to match.
"""
from amaranth import Cat, Const, Mux, Signal, Value, signed
from amaranth.utils import ceil_log2

FP32_QNAN = 0x7FC00000
FP32_INF = 0x7F800000
FP32_BIAS = 127
FP32_MAN = 23
EXP_SHAPE = signed(12)  # every exponent here (bf16 x bf16 products span 2^-266 .. 2^256)

# Register boundaries inside round_fp32: after the leading-zero count, after the shift-amount
# arithmetic, after the shift. The final rounding step is combinational.
ROUND_REGS = (True, True, True)
# fp32_add: unpack/order, align+add, then round_fp32 (28-bit sum) with ADD_ROUND_REGS and
# ADD_LZ_SPLIT, then an output register.
ADD_ROUND_REGS = (True, True, True)
ADD_LZ_SPLIT = 0


def reg(m, value, name, reset_less=True):
    """`value` registered once in `m`'s sync domain (a data register, not reset, unless told:
    control such as valid bits keeps its reset, as in rtl.pipeline.delay)."""
    value = Value.cast(value)
    out = Signal(value.shape(), name=name, reset_less=reset_less)
    m.d.sync += out.eq(value)
    return out


def any_below(value, position):
    """1 when `value` has a set bit strictly below bit `position` (unsigned): a thermometer mask,
    one comparison with a constant per bit (shallower than shifting the value)."""
    value = Value.cast(value)
    return Cat(*(value[i] & (position > i) for i in range(len(value)))).any()


def _stage(m, state, registered, name):
    if not registered:
        return state
    return {key: reg(m, value, f"{name}_{key}") for key, value in state.items()}


def lz_steps(width):
    """Steps of the leading-zero count of a `width`-bit value (binary search over 2^steps bits)."""
    return max(1, ceil_log2(width))


def round_latency(width, lz_split=0, regs=ROUND_REGS):
    """Register stages `round_fp32` inserts for a `width`-bit magnitude."""
    steps = lz_steps(width)
    return ((steps - 1) // lz_split if lz_split else 0) + sum(regs)


def round_fp32(m, mag, exp, sign, zero_sign, nan=0, inf=0, inf_sign=0, regs=ROUND_REGS,
               lz_split=0, name="rnd"):
    """Round (-1)^sign * mag * 2^exp to FP32 with RNE.

    mag: unsigned value; exp: signed value or int; a zero mag gives (-1)^zero_sign * 0.
    nan / inf (with inf_sign) override the result (NaN first). Returns (bits, overflow) as
    combinational values `round_latency(len(mag), lz_split, regs)` cycles after the inputs;
    overflow: a finite non-zero value rounded to +-inf (not raised when nan or inf override).

    Steps: (1) the most significant set bit by a leading-zero count (binary search over the value
    zero-padded to 2^K bits: step k shifts left by 2^k when the top 2^k bits are zero; the
    zero tests are the count's bits; with `lz_split` a register after every `lz_split` steps),
    (2) the shift amount, (3) the shift and the sticky bit, (4) round to nearest even and pack.
    Vector operations only, so the Verilog stays compact.
    """
    mag = Value.cast(mag)
    width = len(mag)
    assert width <= 1024 and (not isinstance(exp, int) or abs(exp) < 1024), "beyond EXP_SHAPE"
    exp = Const(exp, EXP_SHAPE) if isinstance(exp, int) else exp.as_signed()
    steps = lz_steps(width)
    size = 1 << steps
    lim, exp126 = Signal(EXP_SHAPE, name=f"{name}_lim"), Signal(EXP_SHAPE, name=f"{name}_e126")
    m.d.comb += [lim.eq(-(FP32_BIAS - 1 + FP32_MAN) - exp), exp126.eq(exp + FP32_BIAS - 1)]
    state = dict(mag=mag, lim=lim, exp126=exp126, sign=sign, zero_sign=zero_sign, nan=nan,
                 inf=inf, inf_sign=inf_sign,
                 norm=Cat(mag, Const(0, size - width)) if size > width else mag,
                 zeros=Const(0, steps))
    for i, k in enumerate(reversed(range(steps))):
        step = 1 << k
        norm = state["norm"]
        z = Signal(name=f"{name}_z{k}")
        m.d.comb += z.eq(~norm[size - step:].any())
        shifted = Signal(size, name=f"{name}_n{k}")
        m.d.comb += shifted.eq(Mux(z, norm << step, norm))
        zeros = Signal(steps, name=f"{name}_zeros{k}")
        m.d.comb += zeros.eq(state["zeros"] | (z << k))
        state = state | dict(norm=shifted, zeros=zeros)
        if lz_split and i + 1 < steps and (i + 1) % lz_split == 0:
            state = _stage(m, state, True, f"{name}_l{k}")
    msb = Signal(steps, name=f"{name}_msb")  # 2^K - 1 - leading zeros
    m.d.comb += msb.eq(~state["zeros"])
    state = {k: v for k, v in state.items() if k not in ("norm", "zeros")} | dict(
        msb=msb, nonzero=state["norm"][size - 1])
    state = _stage(m, state, regs[0], f"{name}_a")

    # Quantum of the result: 2^(e_msb - 23) for a normal result, 2^-149 for a subnormal one, so
    # mag (taken with 25 zero bits below it) shifts right by t = max(msb + 2, lim + 25) with
    # lim = -149 - exp, clamped where all bits are gone; the round bit is then bit t - 1 and the
    # sticky bit is any set bit of mag below t - 26. Both are maxima of two (three) sums
    # computed side by side, and so is the biased exponent.
    # Every candidate and its clamp is computed side by side; one comparison picks.
    msb, lim = state["msb"], state["lim"]
    t_max = width + 26
    normal = Signal(name=f"{name}_normal")  # msb + 1 > lim + 24: the result is normal
    m.d.comb += normal.eq(msb > lim + FP32_MAN)
    shift = Signal(range(t_max), name=f"{name}_shift")  # t - 1; msb + 1 < t_max always
    sub_shift = lim + 24
    m.d.comb += shift.eq(Mux(normal, msb + 1, Mux(sub_shift > t_max - 1, t_max - 1, sub_shift)))
    below = Signal(range(width + 1), name=f"{name}_below")  # t - 26, at least 0, at most width
    sub_below = lim - 1
    m.d.comb += below.eq(Mux(normal, Mux(msb > 24, msb - 24, 0),
                             Mux(sub_below < 0, 0, Mux(sub_below > width, width, sub_below))))
    biased = msb + state["exp126"]  # biased exponent - 1, for a normal result
    biased_m1 = Signal(8, name=f"{name}_biased_m1")
    m.d.comb += biased_m1.eq(Mux(biased < 0, 0, Mux(biased > 255, 255, biased)))
    passed = ("mag", "nonzero", "sign", "zero_sign", "nan", "inf", "inf_sign")
    state = dict(shift=shift, below=below, biased_m1=biased_m1, **{k: state[k] for k in passed})
    state = _stage(m, state, regs[1], f"{name}_b")

    shifted = (Cat(Const(0, 25), state["mag"]) >> state["shift"])
    sticky = any_below(state["mag"], state["below"])
    # The exponent field is biased_m1 plus the rounded mantissa's bits 23 and up (0, 1 or 2):
    # the three candidates and their overflow tests are ready before the rounding increment.
    exps = [Signal(9, name=f"{name}_e{k}") for k in range(3)]
    m.d.comb += [e.eq(state["biased_m1"] + k) for k, e in enumerate(exps)]
    passed = ("nonzero", "sign", "zero_sign", "nan", "inf", "inf_sign")
    state = dict(round_bit=shifted[0], mant=shifted[1:25], sticky=sticky,
                 exps=Cat(*(e[:8] for e in exps)), ovfs=Cat(*(e >= 255 for e in exps)),
                 **{k: state[k] for k in passed})
    state = _stage(m, state, regs[2], f"{name}_c")

    mant = state["mant"]
    rounded = Signal(25, name=f"{name}_rounded")
    m.d.comb += rounded.eq(mant + (state["round_bit"] & (state["sticky"] | mant[0])))
    carry = rounded[23:25]  # the rounded significand's weight above the fraction: 0, 1 or 2
    exps, ovfs = state["exps"], state["ovfs"]
    field = Mux(carry[1], exps[16:24], Mux(carry[0], exps[8:16], exps[0:8]))
    overflow = Mux(carry[1], ovfs[2], Mux(carry[0], ovfs[1], ovfs[0]))
    bits = Signal(32, name=f"{name}_bits")
    m.d.comb += bits.eq(
        Mux(state["nan"], FP32_QNAN,
            Mux(state["inf"], Cat(Const(FP32_INF, 31), state["inf_sign"]),
                Mux(~state["nonzero"], Cat(Const(0, 31), state["zero_sign"]),
                    Mux(overflow, Cat(Const(FP32_INF, 31), state["sign"]),
                        Cat(rounded[:23], field, state["sign"]))))))
    flag = Signal(name=f"{name}_overflow")
    m.d.comb += flag.eq(overflow & state["nonzero"] & ~state["nan"] & ~state["inf"])
    return bits, flag


ADD_SUM_BITS = 28  # carry, hidden bit, 23 fraction bits, 3 alignment bits
FP32_ADD_LATENCY = 2 + round_latency(ADD_SUM_BITS, ADD_LZ_SPLIT, ADD_ROUND_REGS) + 1


def fp32_fields(x):
    """(sign, biased exponent, fraction, is NaN, is inf) of FP32 bits."""
    x = Value.cast(x)
    sign, biased, frac = x[31], x[23:31], x[:23]
    return sign, biased, frac, biased.all() & frac.any(), biased.all() & ~frac.any()


def fp32_add(m, x, y, name="add"):
    """x + y, binary32 RNE. Returns (bits, flag) registered FP32_ADD_LATENCY cycles after x, y;
    flag = IEEE overflow (finite operands, infinite result) | invalid (inf + -inf)."""
    sx, _, _, nan_x, inf_x = fp32_fields(x)
    sy, _, _, nan_y, inf_y = fp32_fields(y)
    swap = y[:31] > x[:31]  # order by magnitude: |a| >= |b|
    a, b = Mux(swap, y, x), Mux(swap, x, y)
    ea, eb = a[23:31], b[23:31]
    ea1, eb1 = Mux(ea.any(), ea, 1), Mux(eb.any(), eb, 1)  # value = mant * 2^(e1 - 150)
    # The exponent difference of both orders side by side with the comparison, then picked.
    ex, ey = x[23:31], y[23:31]
    ex1, ey1 = Mux(ex.any(), ex, 1), Mux(ey.any(), ey, 1)
    diff = Signal(8, name=f"{name}_diff")
    m.d.comb += diff.eq(Mux(swap, ey1 - ex1, ex1 - ey1))
    invalid = inf_x & inf_y & (sx ^ sy)
    state = dict(ma=Cat(a[:23], ea.any()), mb=Cat(b[:23], eb.any()), ea1=ea1,
                 diff=Mux(diff > 31, 31, diff)[:5], sign=a[31], sub=a[31] ^ b[31],
                 nan=nan_x | nan_y | invalid, inf=inf_x | inf_y, inf_sign=Mux(inf_x, sx, sy),
                 invalid=invalid, zero_sign=sx & sy)
    state = _stage(m, state, True, f"{name}_u")

    # Align b with three extra bits; the bits shifted out fold into the LSB (round to odd), which
    # keeps RNE exact: a sticky shift (diff > 3) leaves the sum >= 2^25, so the result rounds at
    # least two bits above that LSB.
    mb3 = Cat(Const(0, 3), state["mb"])
    sticky = any_below(mb3, state["diff"])
    aligned = (mb3 >> state["diff"]) | sticky
    ma3 = Cat(Const(0, 3), state["ma"])
    total = Signal(ADD_SUM_BITS, name=f"{name}_sum")
    m.d.comb += total.eq(Mux(state["sub"], ma3 - aligned, ma3 + aligned))
    exp = Signal(EXP_SHAPE, name=f"{name}_exp")
    m.d.comb += exp.eq(state["ea1"] - (FP32_BIAS + FP32_MAN + 3))
    passed = ("sign", "zero_sign", "nan", "inf", "inf_sign", "invalid")
    state = dict(total=total, exp=exp, **{k: state[k] for k in passed})
    state = _stage(m, state, True, f"{name}_s")

    bits, overflow = round_fp32(m, state["total"], state["exp"], state["sign"],
                                state["zero_sign"], nan=state["nan"], inf=state["inf"],
                                inf_sign=state["inf_sign"], regs=ADD_ROUND_REGS,
                                lz_split=ADD_LZ_SPLIT, name=f"{name}_r")
    invalid = state["invalid"]
    for i in range(round_latency(ADD_SUM_BITS, ADD_LZ_SPLIT, ADD_ROUND_REGS)):
        invalid = reg(m, invalid, f"{name}_inv{i}")
    return reg(m, bits, f"{name}_out"), reg(m, overflow | invalid, f"{name}_flag")
