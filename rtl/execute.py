"""The execute unit (rtl.isa GEMM) for the output-stationary array: a tile sequencer and feeder
in front of the array, a drain and the output stage behind it.

Feeder (the array-facing part a dataflow replaces): tiles in the order row panel i, column panel
j, K-group g; for each beat it reads ACT word act_addr + i*groups + g and WEIGHT word
weight_addr + j*groups + g (the buffers keep every panel, so a panel is reused by every tile
that needs it without reloading), into a 4-deep skid FIFO that feeds the array's act and weight
streams, one beat per cycle (`last` on g = groups - 1).
Drain: takes one element of the array's result tile per cycle (row-major), reads its column's
PARAM word, runs it through the output stage (rtl.output_stage) and writes the OUT word
dst_addr + row*n + col (elements inside m x n only) or, with `to_act`, the ACT lane of the
chained layout (every element of the padded tile; zero outside m x n).
Cycles of one GEMM: about max(groups, R*C) per tile plus the array's latency and the drain's
pipeline (golden.cycle_model has the exact count).
"""
from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from .isa import ADDR_BITS, SIZE_BITS, Requant
from .output_stage import LATENCY as STAGE_LATENCY, OutputStage

FEED_DEPTH = 4
DRAIN_LATENCY = 2 + STAGE_LATENCY   # element taken -> PARAM word read -> stage -> write


class ExecuteUnit(wiring.Component):
    """`start` (while not `busy`) runs one accepted GEMM on `array` (rtl.mac_array.SparseArray,
    a submodule of the caller: its act/weight/result streams are driven here). Operands are the
    GEMM fields plus the controller's derived sizes (row_panels, col_panels, groups,
    dst_panel_words = col_panels*C/M). Buffer ports: synchronous reads `*_rd_*` (data one cycle
    after addr/en), writes `out_wr_*` and `act_wr_*` (lane enables of act_width lanes)."""

    def __init__(self, array, act_width, acc_width, act_bits, weight_bits):
        self.array = array
        self.rows, self.cols, self.group = array.rows, array.cols, array.m
        self.act_width, self.acc_width = act_width, acc_width
        self.act_bits, self.weight_bits = act_bits, weight_bits
        lanes = self.rows * self.group
        super().__init__({
            "start": In(1), "busy": Out(1), "beat": Out(1),
            "act_addr": In(ADDR_BITS), "weight_addr": In(ADDR_BITS), "param_addr": In(ADDR_BITS),
            "dst_addr": In(ADDR_BITS), "m": In(SIZE_BITS), "n": In(SIZE_BITS),
            "relu": In(1), "raw": In(1), "to_act": In(1),
            "row_panels": In(SIZE_BITS), "col_panels": In(SIZE_BITS), "groups": In(SIZE_BITS),
            "dst_panel_words": In(SIZE_BITS),
            "act_rd_addr": Out(ADDR_BITS), "act_rd_en": Out(1), "act_rd_data": In(act_bits),
            "weight_rd_addr": Out(ADDR_BITS), "weight_rd_en": Out(1),
            "weight_rd_data": In(weight_bits),
            "param_rd_addr": Out(ADDR_BITS), "param_rd_en": Out(1),
            "param_rd_data": In(Requant),
            "out_wr_addr": Out(ADDR_BITS), "out_wr_en": Out(1), "out_wr_data": Out(acc_width),
            "act_wr_addr": Out(ADDR_BITS), "act_wr_en": Out(lanes), "act_wr_data": Out(act_bits),
        })

    def elaborate(self, platform):
        m = Module()
        # Operands, held for the whole GEMM.
        held = {name: Signal.like(getattr(self, name), name=f"op_{name}")
                for name in ("act_addr", "weight_addr", "param_addr", "dst_addr", "m", "n", "relu",
                             "raw", "to_act", "row_panels", "col_panels", "groups",
                             "dst_panel_words")}
        with m.If(self.start):
            m.d.sync += [sig.eq(getattr(self, name)) for name, sig in held.items()]
        feeding = self._feeder(m, held)
        draining = self._drain(m, held)
        m.d.comb += self.busy.eq(feeding | draining)
        return m

    def _feeder(self, m, op):
        array = self.array
        running = Signal()
        i, j, g = Signal(SIZE_BITS), Signal(SIZE_BITS), Signal(SIZE_BITS)
        act_base, act_ptr, weight_ptr = Signal(ADDR_BITS), Signal(ADDR_BITS), Signal(ADDR_BITS)
        m.submodules.feed = feed = fifo.SyncFIFO(width=self.act_bits + self.weight_bits + 1,
                                                  depth=FEED_DEPTH)
        inflight, inflight_last = Signal(), Signal()
        issue = running & (feed.level + inflight < FEED_DEPTH - 1)
        with m.If(self.start):
            m.d.sync += [running.eq(1), i.eq(0), j.eq(0), g.eq(0), act_base.eq(self.act_addr),
                         act_ptr.eq(self.act_addr), weight_ptr.eq(self.weight_addr)]
        last_group = g == op["groups"] - 1
        with m.If(issue):
            with m.If(~last_group):
                m.d.sync += [g.eq(g + 1), act_ptr.eq(act_ptr + 1), weight_ptr.eq(weight_ptr + 1)]
            with m.Elif(j != op["col_panels"] - 1):
                m.d.sync += [g.eq(0), j.eq(j + 1), act_ptr.eq(act_base),
                             weight_ptr.eq(weight_ptr + 1)]
            with m.Else():
                m.d.sync += [g.eq(0), j.eq(0), i.eq(i + 1), act_base.eq(act_base + op["groups"]),
                             act_ptr.eq(act_base + op["groups"]), weight_ptr.eq(op["weight_addr"])]
                with m.If(i == op["row_panels"] - 1):
                    m.d.sync += running.eq(0)
        m.d.comb += [self.act_rd_addr.eq(act_ptr), self.act_rd_en.eq(issue),
                     self.weight_rd_addr.eq(weight_ptr), self.weight_rd_en.eq(issue)]
        m.d.sync += [inflight.eq(issue), inflight_last.eq(last_group)]
        m.d.comb += [feed.w_en.eq(inflight),
                     feed.w_data.eq(Cat(self.act_rd_data, self.weight_rd_data, inflight_last))]
        # FIFO -> array: one joined beat per cycle.
        act_data = feed.r_data[:self.act_bits]
        weight_data = feed.r_data[self.act_bits:self.act_bits + self.weight_bits]
        m.d.comb += [array.act.payload.data.eq(act_data),
                     array.act.payload.last.eq(feed.r_data[-1]),
                     array.weight.payload.eq(weight_data),
                     array.act.valid.eq(feed.r_rdy), array.weight.valid.eq(feed.r_rdy),
                     feed.r_en.eq(array.act.ready & array.weight.ready & feed.r_rdy),
                     self.beat.eq(array.act.ready & array.weight.ready & feed.r_rdy)]
        return running | inflight | feed.r_rdy

    def _drain(self, m, op):
        array, rows, cols, lanes_m = self.array, self.rows, self.cols, self.group
        active = Signal()      # tiles of this GEMM still to come out of the array
        ti, tj = Signal(SIZE_BITS), Signal(SIZE_BITS)
        r, c = Signal(range(rows)), Signal(range(cols))
        row_base = Signal(SIZE_BITS + 1)   # ti * R
        col_base = Signal(SIZE_BITS + 1)   # tj * C
        panel_base = Signal(ADDR_BITS)     # dst_addr + ti * dst_panel_words
        with m.If(self.start):
            m.d.sync += [active.eq(1), ti.eq(0), tj.eq(0), r.eq(0), c.eq(0), row_base.eq(0),
                         col_base.eq(0), panel_base.eq(self.dst_addr)]
        take = active & array.result.valid
        last_element = (r == rows - 1) & (c == cols - 1)
        m.d.comb += array.result.ready.eq(take & last_element)
        with m.If(take):
            m.d.sync += c.eq(Mux(c == cols - 1, 0, c + 1))
            with m.If(c == cols - 1):
                m.d.sync += r.eq(Mux(r == rows - 1, 0, r + 1))
            with m.If(last_element):
                with m.If(tj != op["col_panels"] - 1):
                    m.d.sync += [tj.eq(tj + 1), col_base.eq(col_base + cols)]
                with m.Else():
                    m.d.sync += [tj.eq(0), col_base.eq(0), ti.eq(ti + 1),
                                 row_base.eq(row_base + rows),
                                 panel_base.eq(panel_base + op["dst_panel_words"])]
                    with m.If(ti == op["row_panels"] - 1):
                        m.d.sync += active.eq(0)

        # Stage A: the element, its coordinates and its column's PARAM word (read now).
        acc_a = Signal(array.result.payload.shape().elem_shape.elem_shape, name="acc_a")
        valid_a, row_a, col_a, local_a = Signal(), Signal(SIZE_BITS + 1), Signal(SIZE_BITS + 1), Signal(range(rows * lanes_m))
        panel_a = Signal(ADDR_BITS)
        col = col_base + c
        m.d.comb += [self.param_rd_addr.eq(op["param_addr"] + col), self.param_rd_en.eq(take)]
        m.d.sync += [valid_a.eq(take), acc_a.eq(array.result.payload[r][c]),
                     row_a.eq(row_base + r), col_a.eq(col), panel_a.eq(panel_base),
                     local_a.eq(r * lanes_m + col[:lanes_m.bit_length() - 1])]
        # Stage B: destination addresses and the output stage's inputs.
        inside = (row_a < op["m"]) & (col_a < op["n"])
        out_addr = Signal(ADDR_BITS)
        act_addr = Signal(ADDR_BITS)
        lane = Signal.like(local_a)
        keep = Signal()
        m.d.sync += [out_addr.eq(op["dst_addr"] + row_a * op["n"] + col_a),
                     act_addr.eq(panel_a + (col_a >> (lanes_m.bit_length() - 1))),
                     lane.eq(local_a), keep.eq(inside)]
        bias = Signal.like(self.param_rd_data.bias)
        mult = Signal.like(self.param_rd_data.mult)
        shift = Signal.like(self.param_rd_data.shift)
        acc_b, valid_b = Signal.like(acc_a), Signal()
        m.d.sync += [bias.eq(self.param_rd_data.bias), mult.eq(self.param_rd_data.mult),
                     shift.eq(self.param_rd_data.shift), acc_b.eq(acc_a), valid_b.eq(valid_a)]
        # Output stage; the tag carries the addresses, lane and whether the element is inside.
        tag = Cat(out_addr, act_addr, lane, keep)
        m.submodules.output_stage = stage = OutputStage(self.acc_width, self.act_width, len(tag))
        m.d.comb += [stage.valid.eq(valid_b), stage.acc.eq(acc_b), stage.bias.eq(bias),
                     stage.mult.eq(mult), stage.shift.eq(shift), stage.relu.eq(op["relu"]),
                     stage.raw.eq(op["raw"]), stage.tag.eq(tag)]
        y_out, y_act = stage.y_tag[:ADDR_BITS], stage.y_tag[ADDR_BITS:2 * ADDR_BITS]
        y_lane = stage.y_tag[2 * ADDR_BITS:2 * ADDR_BITS + len(lane)]
        y_keep = stage.y_tag[-1]
        y = stage.y
        m.d.comb += [self.out_wr_addr.eq(y_out), self.out_wr_data.eq(y),
                     self.out_wr_en.eq(stage.y_valid & y_keep & ~op["to_act"]),
                     self.act_wr_addr.eq(y_act),
                     self.act_wr_data.eq(Cat(*[Mux(y_keep, y[:self.act_width], 0)] * (rows * lanes_m))),
                     self.act_wr_en.eq(Mux(stage.y_valid & op["to_act"], Const(1, rows * lanes_m) << y_lane, 0))]
        pipe = Signal(STAGE_LATENCY)   # valid_b through the output stage
        m.d.sync += pipe.eq(Cat(valid_b, pipe[:-1]))
        return active | valid_a | valid_b | pipe.any()
