"""UART transmitter and receiver (8N1) with `amaranth.lib.stream` byte interfaces.

Both take `divisor`, the number of clock cycles per bit (`divisor_for(clk_hz, baud)`), as an
elaboration-time parameter. A byte on the wire: one start bit (0), eight data bits LSB first, one
stop bit (1); the idle line is 1.

`UARTTx`:  `i` (byte stream in) -> `tx` (serial out). Accepts a byte whenever the previous one has
           finished (stop bit included), so back-to-back bytes leave with no idle gap.
`UARTRx`:  `rx` (serial in) -> `o` (byte stream out). The line goes through a 2-FF synchronizer;
           a falling edge starts a frame, the start bit is re-checked half a bit later (a glitch
           shorter than half a bit is ignored), then each data bit and the stop bit are sampled in
           the middle of their bit time. A frame whose stop bit is 0 is dropped and pulses
           `framing_error` (after a break, the receiver waits for the line to go idle again). A
           byte completing while the previous one is still unread is dropped and pulses `overrun`.
           The receiver is ready for the next start bit right after sampling the stop bit, and
           samples within a cycle of each bit's middle, so it tolerates a sender about 4% faster
           or slower than `divisor` (less for small divisors, where one cycle is a larger part of
           a bit).
"""
from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

MIN_DIVISOR = 4
SYNC_LAG = 2  # cycles from the pin to `line` (the 2-FF synchronizer)


def divisor_for(clk_hz, baud) -> int:
    """Clock cycles per bit for `baud` at `clk_hz`, rounded; ValueError if the rate error would
    exceed 2% (half of what 8N1 tolerates between two ends) or the divisor is below the minimum."""
    divisor = round(clk_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud {baud} is too fast for a {clk_hz / 1e6:g} MHz clock "
                         f"(needs at least {MIN_DIVISOR} cycles per bit)")
    error = abs(clk_hz / divisor - baud) / baud
    if error > 0.02:
        raise ValueError(f"baud {baud} at {clk_hz / 1e6:g} MHz is off by {100 * error:.1f}% (> 2%)")
    return divisor


def _check_divisor(divisor):
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be an integer >= {MIN_DIVISOR}, got {divisor!r}")


class UARTTx(wiring.Component):
    """8N1 transmitter: bytes from the `i` stream leave on `tx`, `divisor` cycles per bit."""

    def __init__(self, divisor):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        shreg = Signal(10, init=0x3FF)  # {stop, data[7:0], start}, shifted out LSB first
        bits_left = Signal(range(11))
        timer = Signal(range(self.divisor))
        m.d.comb += [self.tx.eq(shreg[0]), self.i.ready.eq(bits_left == 0)]
        with m.If(bits_left == 0):
            with m.If(self.i.valid):
                m.d.sync += [shreg.eq(Cat(0, self.i.payload, 1)), bits_left.eq(10),
                             timer.eq(self.divisor - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [shreg.eq(Cat(shreg[1:], 1)), bits_left.eq(bits_left - 1),
                         timer.eq(self.divisor - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class UARTRx(wiring.Component):
    """8N1 receiver: frames on `rx` become bytes on the `o` stream (see the module docstring)."""

    def __init__(self, divisor):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8)),
                          "framing_error": Out(1), "overrun": Out(1)})

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1, stages=2)

        timer = Signal(range(self.divisor))
        bit = Signal(range(9))
        shreg = Signal(8)
        m.d.sync += [self.framing_error.eq(0), self.overrun.eq(0)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    # `line` lags the pin by the 2 synchronizer stages: start counting to the
                    # middle of the start bit minus that lag, so every sample is mid-bit.
                    m.d.sync += timer.eq(max(self.divisor // 2 - SYNC_LAG, 0))
                    m.next = "START"
            with m.State("START"):  # wait to the middle of the start bit and check it again
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.next = "IDLE"  # a glitch, not a start bit
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):  # 8 data bits, then the stop bit (bit == 8)
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(bit != 8):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], line)), bit.eq(bit + 1),
                                 timer.eq(self.divisor - 1)]
                with m.Elif(line):  # a good stop bit: deliver the byte
                    with m.If(self.o.valid & ~self.o.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += self.framing_error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):  # after a framing error, wait for the idle line
                with m.If(line):
                    m.next = "IDLE"
        return m

