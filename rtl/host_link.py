"""Host link: a byte-level command protocol between a UART and a generated array's streams.

`HostLinkEngine` turns commands arriving as bytes (`rx` stream) into beats on the array's `act`
and `weight` streams, and answers on the `tx` byte stream with result beats and status.
`LinkedArray` is the whole link: UART receiver + transmitter + engine + array, with pins `rx`
and `tx` (and four status bits for LEDs); it is what a board top instantiates and what the board
testbench simulates.

Protocol (version 1)
====================
Strict request/response: the host sends one command, then reads its whole response before it
sends the next. Every command is an opcode byte followed by a fixed number of payload bytes, and
every response has a fixed length, both derived from the design (A, W, R below). Multi-byte
values are little-endian; a stream payload is sent as ceil(width / 8) bytes holding its bits
(bit 0 of the payload = bit 0 of the first byte; the padding bits of the last byte are ignored on
input and zero on output). The payload bits are the manifest's layouts (`interfaces.act/weight/
result.payload`, see gen/manifest.py): A = ceil(act width / 8), W = ceil(weight width / 8),
R = ceil(result width / 8).

  command                     sent                 response
  0x00 NOP                    1                    1      0x00
  0x01 ACT                    1 + A (the beat)     1      0x01 accepted | 0x81 busy
  0x02 WEIGHT                 1 + W (the beat)     1      0x02 accepted | 0x82 busy
  0x03 RESULT                 1                    1 + R  0x03 + result beat | 0x83 + R zero bytes
  0x04 STATUS                 1                    1 + 5  0x04, flags, bad_groups (4 bytes)
  0x05 CLEAR                  1                    1      0x05
  0x06 INFO                   1                    1 + 16 0x06, version (1), rows, cols, n, m,
                                                          flags (bit 0 dense), A, W, R (2 bytes
                                                          each), config hash (its first 4 bytes)
  anything else               1                    1      0xFF (and the link_error flag is set)

The response's first byte echoes the opcode; bit 7 set means "not done".

The accelerator's link (version 2, `LinkedAccelerator`): the same engine and framing, with the
accelerator's AXI4-Stream interfaces behind the three streams: ACT (0x01) carries one command
(rtl.isa.encode, A = 16 bytes) to `s_axis_cmd`, WEIGHT (0x02) one data-in word (W = stream_width
/ 8 bytes) to `s_axis_data`, RESULT (0x03) answers one data-out word and its tlast (R =
stream_width / 8 + 1 bytes: tdata, then a byte whose bit 0 is tlast). STATUS answers 1 + 5 + 13
bytes: after the flags (bits 0-1 the accelerator's overflow and meta_error, bit 2 a data-out word
is ready, bits 3-4 the holding registers, bit 5 link_error) and bad_groups, one byte (bit 0 busy,
bit 1 cmd_error, bits 4-7 error_code: rtl.isa.Error) and the accelerator's `cycles` and
`array_beats` counters (6 bytes each). CLEAR resets the accelerator (its state, flags, counters;
not the buffers' contents). INFO reports version 2 and A, W, R.

ACT / WEIGHT: the link keeps one holding register per input stream, which presents the beat to the
array (valid until the array takes it). A beat is *accepted* (0x01 / 0x02) when the holding
register was empty when its opcode arrived: the beat will transfer exactly once, as soon as the
array takes it (act and weight beats join in the array; a tile's `last` beat also waits until the
previous tile's result has been read). If the holding register still held an earlier beat, the
command's payload is discarded and the answer is *busy* (0x81 / 0x82): the host retries later
(after sending the other stream's beat, or reading a result). So no beat is lost or duplicated.

RESULT: if the array has a result beat ready, its R bytes are sent and the beat is consumed (on
the last byte); otherwise 0x83 and R zero bytes, and nothing is consumed.

STATUS flags: bit 0 overflow, bit 1 meta_error (the array's sticky flags), bit 2 a result beat is
ready, bit 3 the act holding register is full, bit 4 the weight holding register is full, bit 5
link_error (sticky: an unknown opcode, a framing error or overrun on the UART, bytes arriving
while a response was being sent, or a command timeout). Then `bad_groups` (32 bits). The status
is a snapshot taken when the opcode arrives.

CLEAR: a synchronous reset of the array (its sticky flags, bad-group counter, accumulators and
any pending result) and of the link's holding registers and link_error.

Timeout and resynchronisation: if the payload bytes of a command stop arriving for `timeout_cycles`
clock cycles, the partial command is dropped without a response (and nothing reaches the array)
and link_error is set. A host that lost track (a read timed out) waits longer than the timeout,
discards any input, and sends NOP, which answers 0x00.
"""
import enum

from amaranth import (Cat, ClockDomain, ClockSignal, Const, DomainRenamer, Module, Mux, ResetSignal,
                      Shape, Signal, Value)
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .isa import COMMAND_BITS
from .mac_array import BAD_GROUP_COUNTER_WIDTH
from .uart import UARTRx, UARTTx

PROTOCOL_VERSION = 1


class Op(enum.IntEnum):
    NOP = 0x00
    ACT = 0x01
    WEIGHT = 0x02
    RESULT = 0x03
    STATUS = 0x04
    CLEAR = 0x05
    INFO = 0x06


NOT_DONE = 0x80       # set in the echoed opcode: busy (ACT/WEIGHT) or no result ready (RESULT)
UNKNOWN_OPCODE = 0xFF
STATUS_BITS = ("overflow", "meta_error", "result_valid", "act_full", "weight_full", "link_error")
STATUS_LEN = 1 + BAD_GROUP_COUNTER_WIDTH // 8   # response bytes after the echoed opcode
INFO_LEN = 16
ACCEL_PROTOCOL_VERSION = 2
ACCEL_STATUS_LEN = 1 + 2 * 6   # the accelerator link's extra STATUS bytes (module docstring)


def payload_bytes(width) -> int:
    """Bytes that carry a payload of `width` bits."""
    return (width + 7) // 8


def ident_bytes(parameters, config_hash, act_bits, weight_bits, result_bits,
                version=PROTOCOL_VERSION) -> bytes:
    """The INFO response body of a design: from its manifest `parameters` (rows, cols, n, m,
    dense; any PE kind), `config_hash` (hex), its stream payload widths in bits and the protocol
    `version` (1: the array's link, `ACCEL_PROTOCOL_VERSION`: the accelerator's)."""
    p = parameters
    head = [version, p["rows"], p["cols"], p["n"], p["m"], int(bool(p["dense"]))]
    if any(not 0 <= f <= 255 for f in head):
        raise ValueError(f"parameters {head} do not fit the INFO response bytes")
    lengths = b"".join(payload_bytes(bits).to_bytes(2, "little")
                       for bits in (act_bits, weight_bits, result_bits))
    return bytes(head) + lengths + bytes.fromhex(config_hash[:8])


class HostLinkEngine(wiring.Component):
    """The protocol engine (see the module docstring). `act_layout`, `weight_layout` and
    `result_layout` are the array's stream payload shapes; `ident` the INFO bytes (`ident_bytes`);
    `timeout_cycles` the payload-byte timeout (0: none)."""

    def __init__(self, act_layout, weight_layout, result_layout, ident, timeout_cycles,
                 extra_status_bytes=0):
        if len(ident) != INFO_LEN:
            raise ValueError(f"ident must be {INFO_LEN} bytes, got {len(ident)}")
        self.ident = bytes(ident)
        self.timeout_cycles = int(timeout_cycles)
        self.act_width = Shape.cast(act_layout).width
        self.weight_width = Shape.cast(weight_layout).width
        self.result_width = Shape.cast(result_layout).width
        self.status_len = STATUS_LEN + extra_status_bytes
        super().__init__({
            "extra_status": In(8 * extra_status_bytes),   # STATUS bytes after bad_groups
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "act": Out(stream.Signature(act_layout)),
            "weight": Out(stream.Signature(weight_layout)),
            "result": In(stream.Signature(result_layout)),
            "overflow": In(1),
            "meta_error": In(1),
            "bad_groups": In(BAD_GROUP_COUNTER_WIDTH),
            "rx_error": In(1),        # pulses: UART framing error or overrun
            "clear": Out(1),          # one-cycle pulse: reset the array
            "link_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        act_len, weight_len = payload_bytes(self.act_width), payload_bytes(self.weight_width)
        result_len = payload_bytes(self.result_width)
        max_len = max(act_len, weight_len, result_len, self.status_len, INFO_LEN)

        # Holding registers: filled a byte at a time (shifting right, so the first byte ends up
        # least significant) only while empty; presented to the array while full.
        act_reg, act_full = Signal(8 * act_len), Signal()
        weight_reg, weight_full = Signal(8 * weight_len), Signal()
        m.d.comb += [self.act.payload.eq(act_reg[:self.act_width]), self.act.valid.eq(act_full),
                     self.weight.payload.eq(weight_reg[:self.weight_width]),
                     self.weight.valid.eq(weight_full)]
        with m.If(self.act.valid & self.act.ready):
            m.d.sync += act_full.eq(0)
        with m.If(self.weight.valid & self.weight.ready):
            m.d.sync += weight_full.eq(0)

        op = Signal(8)
        not_done = Signal()          # ACT/WEIGHT: busy; RESULT: no result ready
        header = Signal(8)
        count = Signal(range(max_len + 1))
        status = Signal(8 * self.status_len)
        timer = Signal(range(max(self.timeout_cycles, 1) + 1))

        m.d.sync += self.clear.eq(0)
        with m.If(self.rx_error):
            m.d.sync += self.link_error.eq(1)

        # Response data bytes, by command; byte `count` of the one being sent.
        result_bytes = Cat(Value.cast(self.result.payload), Const(0, 8 * result_len - self.result_width))
        info_bytes = Const(int.from_bytes(self.ident, "little"), 8 * INFO_LEN)
        data_byte = Signal(8)
        with m.Switch(op):
            with m.Case(Op.RESULT):
                m.d.comb += data_byte.eq(result_bytes.word_select(count, 8) & ~not_done.replicate(8))
            with m.Case(Op.STATUS):
                m.d.comb += data_byte.eq(status.word_select(count, 8))
            with m.Case(Op.INFO):
                m.d.comb += data_byte.eq(info_bytes.word_select(count, 8))

        lengths = {Op.RESULT: result_len, Op.STATUS: self.status_len, Op.INFO: INFO_LEN}
        data_len = Signal(range(max_len + 1))
        with m.Switch(op):
            for code, length in lengths.items():
                with m.Case(code):
                    m.d.comb += data_len.eq(length)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    byte = self.rx.payload
                    m.d.sync += [op.eq(byte), header.eq(byte), not_done.eq(0), count.eq(0)]
                    with m.Switch(byte):
                        with m.Case(Op.ACT, Op.WEIGHT):
                            full = Mux(byte == Op.ACT, act_full, weight_full)
                            m.d.sync += [not_done.eq(full), header.eq(Cat(byte[:7], full)),
                                         count.eq(Mux(byte == Op.ACT, act_len, weight_len)),
                                         timer.eq(self.timeout_cycles)]
                            m.next = "RECEIVE"
                        with m.Case(Op.RESULT):
                            m.d.sync += [not_done.eq(~self.result.valid),
                                         header.eq(Cat(byte[:7], ~self.result.valid))]
                            m.next = "HEADER"
                        with m.Case(Op.STATUS):
                            flags = Cat(self.overflow, self.meta_error, self.result.valid, act_full,
                                        weight_full, self.link_error)
                            m.d.sync += status.eq(Cat(flags, Const(0, 8 - len(flags)), self.bad_groups,
                                                      self.extra_status))
                            m.next = "HEADER"
                        with m.Case(Op.CLEAR):
                            m.d.sync += [self.clear.eq(1), act_full.eq(0), weight_full.eq(0),
                                         self.link_error.eq(0)]
                            m.next = "HEADER"
                        with m.Case(Op.NOP, Op.INFO):
                            m.next = "HEADER"
                        with m.Default():
                            m.d.sync += [header.eq(UNKNOWN_OPCODE), self.link_error.eq(1)]
                            m.next = "HEADER"

            with m.State("RECEIVE"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [count.eq(count - 1), timer.eq(self.timeout_cycles)]
                    with m.If(~not_done):
                        with m.If(op == Op.ACT):
                            m.d.sync += act_reg.eq(Cat(act_reg[8:], self.rx.payload))
                        with m.Else():
                            m.d.sync += weight_reg.eq(Cat(weight_reg[8:], self.rx.payload))
                    with m.If(count == 1):
                        with m.If(~not_done):
                            with m.If(op == Op.ACT):
                                m.d.sync += act_full.eq(1)
                            with m.Else():
                                m.d.sync += weight_full.eq(1)
                        m.d.sync += count.eq(0)
                        m.next = "HEADER"
                if self.timeout_cycles:
                    with m.Else():
                        m.d.sync += timer.eq(timer - 1)
                        with m.If(timer == 0):
                            m.d.sync += self.link_error.eq(1)
                            m.next = "IDLE"

            with m.State("HEADER"):
                self._discard_input(m)
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(header)]
                with m.If(self.tx.ready):
                    with m.If((data_len == 0) | (header == UNKNOWN_OPCODE)):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"

            with m.State("DATA"):
                self._discard_input(m)
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(data_byte)]
                with m.If(self.tx.ready):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == data_len - 1):
                        with m.If((op == Op.RESULT) & ~not_done):
                            m.d.comb += self.result.ready.eq(1)  # consume the beat just sent
                        m.next = "IDLE"
        return m

    def _discard_input(self, m):
        """Bytes arriving while a response is sent break the request/response rule: drop them."""
        m.d.comb += self.rx.ready.eq(1)
        with m.If(self.rx.valid):
            m.d.sync += self.link_error.eq(1)


def _payload_shape(component, name):
    return component.signature.members[name].signature.members["payload"].shape


class LinkedArray(wiring.Component):
    """UART (`rx`/`tx` pins, `divisor` cycles per bit) + `HostLinkEngine` + the array.
    `parameters` (rows, cols, n, m, dense) and `config_hash` identify the design to INFO.
    `status` is for LEDs: overflow, meta_error, result ready, link_error."""

    def __init__(self, array, divisor, parameters, config_hash, timeout_cycles):
        self.array = array
        self.divisor = divisor
        widths = [Shape.cast(_payload_shape(array, name)).width for name in ("act", "weight", "result")]
        self.ident = ident_bytes(parameters, config_hash, *widths)
        if timeout_cycles and timeout_cycles < 20 * divisor:
            raise ValueError(f"timeout_cycles {timeout_cycles} is shorter than two bytes on the line "
                             f"({20 * divisor} cycles)")
        self.timeout_cycles = timeout_cycles
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "status": Out(4)})

    def elaborate(self, platform):
        m = Module()
        array = self.array

        def layout(name):
            return _payload_shape(array, name)

        m.submodules.uart_rx = uart_rx = UARTRx(self.divisor)
        m.submodules.uart_tx = uart_tx = UARTTx(self.divisor)
        m.submodules.link = link = HostLinkEngine(layout("act"), layout("weight"), layout("result"),
                                                  self.ident, self.timeout_cycles)
        # The array runs in its own domain, on this clock, reset by `rst` or `clear` (its PEs are
        # module instances that take the domain's reset: a ResetInserter would not reach them).
        m.domains.array = ClockDomain("array", local=True)
        m.d.comb += [ClockSignal("array").eq(ClockSignal()),
                     ResetSignal("array").eq(ResetSignal(allow_reset_less=True) | link.clear)]
        m.submodules.array = DomainRenamer("array")(array)
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx),
                     link.rx_error.eq(uart_rx.framing_error | uart_rx.overrun)]
        wiring.connect(m, uart_rx.o, link.rx)
        wiring.connect(m, link.tx, uart_tx.i)
        wiring.connect(m, link.act, array.act)
        wiring.connect(m, link.weight, array.weight)
        wiring.connect(m, array.result, link.result)
        m.d.comb += [link.overflow.eq(array.overflow), link.meta_error.eq(array.meta_error),
                     link.bad_groups.eq(array.bad_groups),
                     self.status.eq(Cat(array.overflow, array.meta_error, array.result.valid,
                                        link.link_error))]
        return m


class LinkedAccelerator(wiring.Component):
    """UART (`rx`/`tx` pins, `divisor` cycles per bit) + `HostLinkEngine` + the accelerator
    (rtl.accelerator.Accelerator), protocol version 2 (module docstring, "The accelerator's
    link"). `parameters` and `config_hash` identify the design to INFO. `status` is for LEDs:
    busy, cmd_error, meta_error, link_error."""

    def __init__(self, accelerator, divisor, parameters, config_hash, timeout_cycles):
        self.accelerator = accelerator
        self.divisor = divisor
        stream_width = accelerator.shape.stream_width
        self.widths = (COMMAND_BITS, stream_width, stream_width + 1)
        self.ident = ident_bytes(parameters, config_hash, *self.widths, version=ACCEL_PROTOCOL_VERSION)
        if timeout_cycles and timeout_cycles < 20 * divisor:
            raise ValueError(f"timeout_cycles {timeout_cycles} is shorter than two bytes on the line "
                             f"({20 * divisor} cycles)")
        self.timeout_cycles = timeout_cycles
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "status": Out(4)})

    def elaborate(self, platform):
        m = Module()
        accel = self.accelerator
        m.submodules.uart_rx = uart_rx = UARTRx(self.divisor)
        m.submodules.uart_tx = uart_tx = UARTTx(self.divisor)
        m.submodules.link = link = HostLinkEngine(*self.widths, self.ident, self.timeout_cycles,
                                                  extra_status_bytes=ACCEL_STATUS_LEN)
        # As LinkedArray: the accelerator in its own domain, reset by `rst` or CLEAR.
        m.domains.array = ClockDomain("array", local=True)
        m.d.comb += [ClockSignal("array").eq(ClockSignal()),
                     ResetSignal("array").eq(ResetSignal(allow_reset_less=True) | link.clear)]
        m.submodules.accelerator = DomainRenamer("array")(accel)
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx),
                     link.rx_error.eq(uart_rx.framing_error | uart_rx.overrun)]
        wiring.connect(m, uart_rx.o, link.rx)
        wiring.connect(m, link.tx, uart_tx.i)
        # CMD = the link's first input stream, DATA the second, READ its result stream.
        m.d.comb += [
            accel.s_axis_cmd.tdata.eq(link.act.payload), accel.s_axis_cmd.tvalid.eq(link.act.valid),
            link.act.ready.eq(accel.s_axis_cmd.tready),
            accel.s_axis_data.tdata.eq(link.weight.payload),
            accel.s_axis_data.tvalid.eq(link.weight.valid),
            link.weight.ready.eq(accel.s_axis_data.tready),
            link.result.payload.eq(Cat(accel.m_axis_data.tdata, accel.m_axis_data.tlast)),
            link.result.valid.eq(accel.m_axis_data.tvalid),
            accel.m_axis_data.tready.eq(link.result.ready),
            link.overflow.eq(accel.overflow), link.meta_error.eq(accel.meta_error),
            link.bad_groups.eq(accel.bad_groups),
            link.extra_status.eq(Cat(accel.busy, accel.cmd_error, Const(0, 2), accel.error_code,
                                     accel.cycles, accel.array_beats)),
            self.status.eq(Cat(accel.busy, accel.cmd_error, accel.meta_error, link.link_error)),
        ]
        return m
