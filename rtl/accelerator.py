"""The accelerator: the array plus on-chip buffers, a command controller and three units.

Interfaces (AXI4-Stream, rtl.axis): `s_axis_cmd` (one rtl.isa.Command per 128-bit beat),
`s_axis_data` (LOAD data, `stream_width` bits; tlast is not checked), `m_axis_data` (STORE data,
tlast on each STORE's last word). Status: `busy` (a command is being checked or a unit runs),
`cmd_error` (sticky) and `error_code` (rtl.isa.Error of the last refused command), `overflow`,
`meta_error`, `bad_groups` (the array's), `cycles` (cycles with `busy` high), `array_beats`
(beats the array took).

Buffers are amaranth.lib.memory.Memory (block RAM): ACT (one write port shared by the load unit
and the drain's chained writes, the drain first; one read port), WEIGHT (one write, one read
port; rtl.sliced_memory, in slices of the block RAM's width when deep); PARAM and OUT are
rtl.banked_memory.BankedMemory (C banks or more: the drain reads a tile's C PARAM words and
writes a row of C results per cycle, the store unit reads a data-out word's elements per cycle).

Controller: a command is taken from `s_axis_cmd` when the controller is idle, then decoded,
sized (a GEMM's range products by shift-and-add, a bit per cycle, then sums), compared with
the buffers' depths and checked, each step's result in registers (`control_cycles` from taking
a command to dispatching it); a refused command sets `cmd_error`/`error_code` and is
dropped; an accepted one waits in DISPATCH until its unit is free (and, with `wait`,
until every unit is free), as the units' busy flags said a cycle before, and starts it the
cycle after from a register. So
LOAD, GEMM and STORE of different units run at the same time, in program order per unit
(golden.accel.hazards states which programs are safe).
"""
from amaranth import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .accel_io import LoadUnit, StoreUnit
from .axis import axis_signature
from .banked_memory import BUFFER_ATTRS, BankedMemory
from .execute import ExecuteUnit
from .execute_ws import WsExecuteUnit
from .isa import COMMAND_BITS, SIZE_BITS, Buffer, Command, Error, Opcode, Requant
from .mac_array import BAD_GROUP_COUNTER_WIDTH
from .sliced_memory import SlicedMemory

COUNTER_BITS = 48
CONTROL_CYCLES = 6   # from taking a command to dispatching it (or refusing it: the next can
                     # be taken then), plus product_steps for a GEMM; its unit starts a cycle later


def product_steps(shape):
    """Cycles of the controller's shift-and-add range products: one per bit of the widest
    factor, which is bounded by the deepest buffer a product is compared with."""
    return max(depth.bit_length() for depth in (shape.act_depth, shape.weight_depth,
                                                shape.out_depth))


def control_cycles(shape, opcode):
    """Cycles from taking a command to dispatching it when its unit is free (its unit starts a
    cycle later, when the next command can be taken) or to taking the next after refusing it:
    decode, size, sum, compare, check, and for a GEMM (accepted or refused) its products."""
    return CONTROL_CYCLES + (product_steps(shape) if opcode == Opcode.GEMM else 0)


def _div_const(value, divisor):
    """(value // divisor, value % divisor) for a constant divisor (a shift and a mask when it is
    a power of two)."""
    if divisor & (divisor - 1) == 0:
        bits = divisor.bit_length() - 1
        return value >> bits, (value[:bits] if bits else 0)
    return value // divisor, value % divisor


def _ceil_div(value, divisor):
    if divisor & (divisor - 1) == 0:
        return (value + divisor - 1) >> (divisor.bit_length() - 1)
    return (value + divisor - 1) // divisor


class Accelerator(wiring.Component):
    """`shape` (rtl.isa.AcceleratorShape) gives the stream width and buffer depths; `array` is
    the generated SparseArray (its weight beat must be shape.weight_word_bits wide)."""

    def __init__(self, shape, array):
        self.shape, self.array = shape, array
        super().__init__({
            "s_axis_cmd": In(axis_signature(COMMAND_BITS)),
            "s_axis_data": In(axis_signature(shape.stream_width)),
            "m_axis_data": Out(axis_signature(shape.stream_width)),
            "busy": Out(1), "cmd_error": Out(1), "error_code": Out(Error),
            "overflow": Out(1), "meta_error": Out(1), "bad_groups": Out(BAD_GROUP_COUNTER_WIDTH),
            "cycles": Out(COUNTER_BITS), "array_beats": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        s, array = self.shape, self.array
        m.submodules.array = array
        act_bits, weight_bits = s.act_word_bits, s.weight_word_bits
        beat_bits = array.signature.members["weight"].signature.members["payload"].shape.size
        pattern_bits = beat_bits - weight_bits  # run-time: ids per column
        assert pattern_bits == (s.cols * s.beat_groups * (len(s.patterns)).bit_length()
                                if s.runtime else 0), \
            "weight word != array weight beat"

        m.submodules.act_mem = act_mem = Memory(shape=unsigned(act_bits), depth=s.act_depth, init=[],
                                                  attrs=BUFFER_ATTRS)
        m.submodules.weight_mem = weight_mem = SlicedMemory(weight_bits, s.weight_depth)
        act_wr = act_mem.write_port(granularity=s.act_width)
        act_rd = act_mem.read_port()

        m.submodules.load = load = LoadUnit(s.stream_width, [act_bits, weight_bits,
                                                              Requant.as_shape().size])
        m.submodules.store = store = StoreUnit(s.stream_width, s.act_width, s.acc_width)
        m.submodules.param_mem = param_mem = BankedMemory(Requant.as_shape().size, s.param_depth,
                                                          write_lanes=1, read_lanes=s.cols,
                                                          aligned_reads=s.param_align > 1,
                                                          block_ram=True)
        m.submodules.out_mem = out_mem = BankedMemory(s.acc_width, s.out_depth,
                                                      write_lanes=s.cols, read_lanes=store.lanes,
                                                      registered=True)
        unit = WsExecuteUnit if s.dataflow == "weight_stationary" else ExecuteUnit
        m.submodules.execute = execute = unit(array, s)
        wiring.connect(m, wiring.flipped(self.s_axis_data), load.data)
        wiring.connect(m, store.data, wiring.flipped(self.m_axis_data))

        # Buffer ports.
        granules = act_bits // s.act_width   # the elements and (mx) the rows' scales
        chained = execute.act_wr_busy
        m.d.comb += [
            act_rd.addr.eq(execute.act_rd_addr),
            execute.act_rd_data.eq(act_rd.data),
            weight_mem.rd_addr.eq(execute.weight_rd_addr),
            execute.weight_rd_data.eq(weight_mem.rd_data),
            param_mem.rd_addr.eq(execute.param_rd_addr), param_mem.rd_en.eq(execute.param_rd_en),
            execute.param_rd_data.eq(param_mem.rd_data),
            out_mem.wr_addr.eq(execute.out_wr_addr), out_mem.wr_data.eq(execute.out_wr_data),
            out_mem.wr_en.eq(execute.out_wr_en),
            out_mem.rd_addr.eq(store.rd_addr), out_mem.rd_en.eq(1),
            store.rd_data.eq(out_mem.rd_data),
            weight_mem.wr_addr.eq(load.wr_addr), weight_mem.wr_data.eq(load.wr_data),
            weight_mem.wr_en.eq(load.wr_en & (load.wr_buffer == Buffer.WEIGHT)),
            param_mem.wr_addr.eq(load.wr_addr), param_mem.wr_data[0].eq(load.wr_data),
            param_mem.wr_en.eq(load.wr_en & (load.wr_buffer == Buffer.PARAM)),
            load.grant.eq(~(chained & (load.wr_buffer == Buffer.ACT))),
        ]
        with m.If(chained):
            m.d.comb += [act_wr.addr.eq(execute.act_wr_addr), act_wr.data.eq(execute.act_wr_data),
                         act_wr.en.eq(execute.act_wr_en)]
        with m.Else():
            m.d.comb += [act_wr.addr.eq(load.wr_addr), act_wr.data.eq(load.wr_data),
                         act_wr.en.eq(((1 << granules) - 1)
                                      * (load.wr_en & (load.wr_buffer == Buffer.ACT)))]

        self._controller(m, load, execute, store)

        m.d.comb += [self.overflow.eq(array.overflow), self.meta_error.eq(array.meta_error),
                     self.bad_groups.eq(array.bad_groups)]
        with m.If(execute.beat):
            m.d.sync += self.array_beats.eq(self.array_beats + 1)
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        return m

    def _controller(self, m, load, execute, store):
        s = self.shape
        cmd = Signal(Command)
        g = cmd.operands.gemm
        ld, st = cmd.operands.load, cmd.operands.store
        groups = Signal(SIZE_BITS)       # array beats per tile: k / span(pattern)
        act_groups = Signal(SIZE_BITS)   # ACT words per row panel: k / k_group
        k_bad = Signal()
        row_panels, col_panels = Signal(SIZE_BITS + 1), Signal(SIZE_BITS + 1)
        need = {name: Signal(2 * SIZE_BITS + 2, name=f"need_{name}")
                for name in ("act", "weight", "param", "out", "chain", "load", "store")}
        panel_words = Signal(SIZE_BITS + 8)
        # The sizes' products, each bounded by a buffer's depth: (factor, factor, depth). They are
        # shifted and added in the fabric, a bit per cycle: the MULT18X18Ds they took were far from
        # the controller's registers (the array's multipliers take the nearby sites) and the
        # path through one was the 8x8 accelerator's critical path on ECP5.
        factors = {"act": (row_panels, act_groups, s.act_depth),
                   "weight": (col_panels, groups, s.weight_depth),
                   "out": (g.m, g.n, s.out_depth),
                   "chain": (row_panels, panel_words, s.act_depth)}
        product = {name: Signal(2 * SIZE_BITS + 2, name=f"product_{name}") for name in factors}
        multiplicand = {name: Signal(2 * depth.bit_length(), name=f"multiplicand_{name}")
                        for name, (_, _, depth) in factors.items()}
        multiplier = {name: Signal(depth.bit_length(), name=f"multiplier_{name}")
                      for name, (_, _, depth) in factors.items()}
        steps = product_steps(s)
        steps_left = Signal(range(steps + 1))
        # a factor wider than its depth: the product (both factors >= 1 once the shape is
        # checked) is past the end, and the product only takes the depth's bits
        too_big = {name: Signal(name=f"too_big_{name}") for name in factors}
        # Ranges past the end of their buffer, compared in COMPARE and registered for CHECK.
        past_end = {
            "load_act": need["load"] > s.act_depth,
            "load_weight": need["load"] > s.weight_depth,
            "load_param": need["load"] > s.param_depth,
            "store": need["store"] > s.out_depth,
            "act": too_big["act"] | (need["act"] > s.act_depth),
            "weight": too_big["weight"] | (need["weight"] > s.weight_depth),
            "param": need["param"] > s.param_depth,
            "chain": too_big["chain"] | (need["chain"] > s.act_depth)
                     | ((g.dst_addr < need["act"]) & (g.act_addr < need["chain"])),
            "out": too_big["out"] | (need["out"] > s.out_depth),
        }
        over = {name: Signal(name=f"over_{name}") for name in past_end}
        chain_bad = Signal()

        # Dispatch looks at the units' busy flags a cycle late (registered: the units' busy logic
        # stays off the path to their start); a unit dispatched in DISPATCH starts a cycle later
        # and is seen busy three cycles later, before the next command can reach DISPATCH.
        busy = {name: Signal(name=f"{name}_busy_seen") for name in ("load", "execute", "store")}
        m.d.sync += [busy["load"].eq(load.busy), busy["execute"].eq(execute.busy),
                     busy["store"].eq(store.busy)]
        units_idle = ~(busy["load"] | busy["execute"] | busy["store"])
        # A unit starts the cycle after DISPATCH, from a register: the start pulse fans out to
        # every operand register's enable in its unit (the 4x4's critical path when it came from
        # the dispatch decision). The command register still holds the command then.
        start = {name: Signal(name=f"start_{name}") for name in ("load", "execute", "store")}
        m.d.sync += [pulse.eq(0) for pulse in start.values()]
        m.d.comb += [load.start.eq(start["load"]), execute.start.eq(start["execute"]),
                     store.start.eq(start["store"])]
        unit_free = Signal()
        with m.Switch(cmd.opcode):
            with m.Case(Opcode.LOAD):
                m.d.comb += unit_free.eq(~busy["load"])
            with m.Case(Opcode.GEMM):
                m.d.comb += unit_free.eq(~busy["execute"])
            with m.Case(Opcode.STORE):
                m.d.comb += unit_free.eq(~busy["store"])
            with m.Default():
                m.d.comb += unit_free.eq(1)

        m.d.comb += [
            load.buffer.eq(ld.buffer), load.addr.eq(ld.addr), load.count.eq(ld.count),
            store.addr.eq(st.addr), store.count.eq(st.count), store.wide.eq(st.wide),
            execute.act_addr.eq(g.act_addr), execute.weight_addr.eq(g.weight_addr),
            execute.param_addr.eq(g.param_addr), execute.dst_addr.eq(g.dst_addr),
            execute.m.eq(g.m), execute.n.eq(g.n), execute.relu.eq(g.relu), execute.raw.eq(g.raw),
            execute.to_act.eq(g.to_act), execute.row_panels.eq(row_panels),
            execute.col_panels.eq(col_panels), execute.groups.eq(groups),
            execute.act_groups.eq(act_groups), execute.pattern.eq(g.pattern),
            execute.dst_panel_words.eq(panel_words),
        ]
        error = Signal(Error)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.s_axis_cmd.tready.eq(1)
                with m.If(self.s_axis_cmd.tvalid):
                    m.d.sync += cmd.eq(self.s_axis_cmd.tdata)
                    m.next = "DECODE"
            with m.State("DECODE"):
                m.d.comb += self.busy.eq(1)
                quotient, remainder = _div_const(g.k, s.k_group)
                m.d.sync += [act_groups.eq(quotient), k_bad.eq(remainder != 0)]
                with m.Switch(g.pattern):
                    for pid in range(len(s.patterns)):
                        with m.Case(pid):
                            m.d.sync += groups.eq(_div_const(g.k, s.span(pid))[0])
                # the chained layout's panel width (from n directly: col_panels is set now)
                words, spill = _div_const(_ceil_div(g.n, s.cols) * s.cols, s.k_group)
                m.d.sync += [row_panels.eq(_ceil_div(g.m, s.rows)),
                             col_panels.eq(_ceil_div(g.n, s.cols)),
                             panel_words.eq(words), chain_bad.eq(spill != 0)]
                m.next = "SIZE"
            with m.State("SIZE"):
                # the range products' operands here (shifted and added in MULTIPLY), sums in SUM,
                # comparisons in COMPARE: one adder or comparator per cycle
                m.d.comb += self.busy.eq(1)
                for name, (a, b, depth) in factors.items():
                    bits = depth.bit_length()
                    m.d.sync += [multiplicand[name].eq(a[:bits]), multiplier[name].eq(b[:bits]),
                                 product[name].eq(0),
                                 too_big[name].eq((a[bits:] != 0) | (b[bits:] != 0))]
                m.d.sync += [
                    need["param"].eq(g.param_addr + g.n),
                    need["load"].eq(ld.addr + ld.count),
                    need["store"].eq(st.addr + st.count),
                    steps_left.eq(steps),
                ]
                with m.If(cmd.opcode == Opcode.GEMM):
                    m.next = "MULTIPLY"
                with m.Else():
                    m.next = "SUM"
            with m.State("MULTIPLY"):
                m.d.comb += self.busy.eq(1)
                for name in factors:
                    with m.If(multiplier[name][0]):
                        m.d.sync += product[name].eq(product[name] + multiplicand[name])
                    m.d.sync += [multiplicand[name].eq(multiplicand[name] << 1),
                                 multiplier[name].eq(multiplier[name] >> 1)]
                m.d.sync += steps_left.eq(steps_left - 1)
                with m.If(steps_left == 1):
                    m.next = "SUM"
            with m.State("SUM"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [need["act"].eq(g.act_addr + product["act"]),
                             need["weight"].eq(g.weight_addr + product["weight"]),
                             need["out"].eq(g.dst_addr + product["out"]),
                             need["chain"].eq(g.dst_addr + product["chain"])]
                m.next = "COMPARE"
            with m.State("COMPARE"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [over[name].eq(value) for name, value in past_end.items()]
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                with m.Switch(cmd.opcode):
                    with m.Case(Opcode.NOP):
                        m.d.comb += error.eq(Error.NONE)
                    with m.Case(Opcode.LOAD):
                        with m.If(ld.buffer == Buffer.OUT):
                            m.d.comb += error.eq(Error.BAD_BUFFER)
                        with m.Elif(ld.count == 0):
                            m.d.comb += error.eq(Error.SHAPE)
                        with m.Elif((ld.buffer == Buffer.ACT) & over["load_act"]):
                            m.d.comb += error.eq(Error.ACT_RANGE)
                        with m.Elif((ld.buffer == Buffer.WEIGHT) & over["load_weight"]):
                            m.d.comb += error.eq(Error.WEIGHT_RANGE)
                        with m.Elif((ld.buffer == Buffer.PARAM) & over["load_param"]):
                            m.d.comb += error.eq(Error.PARAM_RANGE)
                    with m.Case(Opcode.STORE):
                        with m.If(st.count == 0):
                            m.d.comb += error.eq(Error.SHAPE)
                        with m.Elif(over["store"]):
                            m.d.comb += error.eq(Error.OUT_RANGE)
                    with m.Case(Opcode.GEMM):
                        with m.If((g.m == 0) | (g.k == 0) | (g.n == 0)):
                            m.d.comb += error.eq(Error.SHAPE)
                        with m.Elif(g.pattern >= len(s.patterns)):
                            m.d.comb += error.eq(Error.PATTERN)
                        with m.Elif(k_bad):
                            m.d.comb += error.eq(Error.K_GROUP)
                        with m.Elif(g.to_act & (g.raw | chain_bad | (s.kind != "int"))):
                            m.d.comb += error.eq(Error.SHAPE)
                        with m.Elif(over["act"]):
                            m.d.comb += error.eq(Error.ACT_RANGE)
                        with m.Elif(over["weight"]):
                            m.d.comb += error.eq(Error.WEIGHT_RANGE)
                        with m.Elif(over["param"]):
                            m.d.comb += error.eq(Error.PARAM_RANGE)
                        with m.Elif(_div_const(g.param_addr, s.param_align)[1] != 0):
                            m.d.comb += error.eq(Error.PARAM_ALIGN)
                        with m.Elif(g.to_act & over["chain"]):
                            m.d.comb += error.eq(Error.ACT_RANGE)
                        with m.Elif(~g.to_act & over["out"]):
                            m.d.comb += error.eq(Error.OUT_RANGE)
                    with m.Default():
                        m.d.comb += error.eq(Error.BAD_OPCODE)
                with m.If(error != Error.NONE):
                    m.d.sync += [self.cmd_error.eq(1), self.error_code.eq(error)]
                    m.next = "IDLE"
                with m.Else():
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                m.d.comb += self.busy.eq(1)
                with m.If(unit_free & (~cmd.wait | units_idle)):
                    with m.Switch(cmd.opcode):
                        with m.Case(Opcode.LOAD):
                            m.d.sync += start["load"].eq(1)
                        with m.Case(Opcode.GEMM):
                            m.d.sync += start["execute"].eq(1)
                        with m.Case(Opcode.STORE):
                            m.d.sync += start["store"].eq(1)
                    m.next = "IDLE"
        with m.If(load.busy | execute.busy | store.busy | start["load"] | start["execute"]
                  | start["store"]):
            m.d.comb += self.busy.eq(1)
