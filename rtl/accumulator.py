"""The integer accumulator shared by the integer PE kinds, and the signed-range fit that every
integer sum of the RTL uses (`fit_signed`, `outside_signed_range`)."""
from amaranth import Mux, Signal, signed


def accumulate(m, addend, valid, last, result, result_valid, overflow, *, saturate, carry_in=None):
    """acc += addend (+ carry_in, a 1-bit value, if given) on each `valid` beat, on len(result) bits, wrapping or saturating.

    On a `last` beat the final sum goes to `result` and the accumulator restarts at 0;
    `result_valid` follows `last` and `overflow` pulses when a beat's exact sum falls outside the
    signed range. Latency: 1 cycle from the addend to `result`.
    """
    width = len(result)
    acc = Signal(signed(width))
    exact = Signal(signed(max(width, len(addend)) + 1))
    total = acc + addend
    m.d.comb += exact.eq(total if carry_in is None else total + carry_in)
    next_acc, out_of_range = fit_signed(exact, width, saturate)
    with m.If(last):
        m.d.sync += [acc.eq(0), result.eq(next_acc)]
    with m.Elif(valid):
        m.d.sync += acc.eq(next_acc)
    m.d.sync += [result_valid.eq(last), overflow.eq(valid & out_of_range)]


def outside_signed_range(top):
    """1 when the bits `top` (a signed sum's bits from its result's sign bit up) are not all
    equal: the sum does not fit the result's signed width."""
    return ~(top.all() | ~top.any())


def fit_signed(exact, width, saturate):
    """The signed sum `exact` cut to `width` bits, wrapping, or saturating when `saturate`:
    (value, out_of_range: `exact` is outside the signed range of `width` bits). Combinational."""
    out_of_range = outside_signed_range(exact[width - 1:])
    value = exact[:width]
    if saturate:
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        value = Mux(out_of_range, Mux(exact[-1], lo, hi), value)
    return value, out_of_range
