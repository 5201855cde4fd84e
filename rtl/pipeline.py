"""Pipeline helpers shared by the RTL blocks."""
from amaranth import Signal


def delay(m, value, cycles, name="delayed", *, reset_less=False):
    """`value` (a signal, slice or data view) delayed by `cycles` registers in `m`'s sync domain.

    Data registers are `reset_less`: their contents only matter alongside a valid bit, and
    leaving them out of the reset keeps the reset net small and the flip-flops freely packable.
    Control (valid, last) keeps its reset."""
    for i in range(cycles):
        delayed = Signal(value.shape(), name=f"{name}{i}", reset_less=reset_less)
        m.d.sync += delayed.eq(value)
        value = delayed
    return value
