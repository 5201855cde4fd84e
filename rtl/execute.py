"""The execute unit (rtl.isa GEMM) for the output-stationary array: a tile sequencer and feeder
in front of the array, a drain and the output stages behind it.

Feeder (the array-facing part a dataflow replaces): tiles in the order row panel i, column panel
j, beat g; for each beat it reads WEIGHT word weight_addr + j*groups + g and the ACT word of the
beat's K range (act_addr + i*act_groups + g*S/G; the buffers keep every panel, so a panel is
reused by every tile that needs it without reloading), registered straight out of the block
RAM (rtl.banked_memory.READ_LATENCY), into an 8-deep skid FIFO that feeds the array's act and
weight streams, one beat per cycle (`last` on g = groups - 1). On a run-time design the GEMM's
pattern picks the beat's slice of the ACT word and its activation window
(golden.nm.act_windows), cut in WINDOW_LATENCY registered steps before the FIFO, and the pattern
id goes to every column's decoder.
Drain: takes one row of the array's result tile per cycle (C results), with the tile's C PARAM
words (read in one cycle from the banked PARAM buffer, rtl.banked_memory), runs them through C
output stages (rtl.output_stage) and writes the OUT words dst_addr + row*n + col (elements
inside m x n only) in one cycle (banked OUT buffer) or, with `to_act`, collects the tile and
writes the ACT words of the chained layout it touches (every element of the padded tile; zero
outside m x n), one word per cycle while the next tile drains.
Cycles of one GEMM: about max(groups, R) per tile plus the array's latency and the drain's
pipeline (golden.cycle_model has the exact count).
"""
from functools import reduce
from math import gcd

from amaranth import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from .banked_memory import READ_LATENCY
from .isa import ADDR_BITS, PATTERN_BITS, SIZE_BITS, Requant
from .output_stage import LATENCY as STAGE_LATENCY, OutputStage, PassThroughStage
from .pipeline import delay

FEED_DEPTH = 8
WINDOW_LATENCY = 2   # run-time patterns: ACT word -> the rows' windows (shift, pick)


class ExecuteUnit(wiring.Component):
    """`start` (while not `busy`) runs one accepted GEMM on `array` (rtl.mac_array.SparseArray,
    a submodule of the caller: its act/weight/result streams are driven here). Operands are the
    GEMM fields plus the controller's derived sizes (row_panels, col_panels, groups,
    dst_panel_words = col_panels*C/M). Buffer ports: synchronous reads `*_rd_*` (data one cycle
    after addr/en; ACT and WEIGHT read every cycle, their data registered once more), writes
    `out_wr_*` and `act_wr_*` (lane enables of act_width lanes; `act_wr_busy`, from a register:
    the chained writer writes ACT this cycle, every word with at least one lane)."""

    def __init__(self, array, shape):
        self.array, self.shape = array, shape
        k_group = shape.k_group
        self.rows, self.cols, self.k_group = shape.rows, array.cols, k_group   # tile rows
        self.act_width, self.acc_width = shape.act_width, shape.acc_width
        self.act_bits, self.weight_bits = shape.act_word_bits, shape.weight_word_bits
        act_bits, acc_width, weight_bits = self.act_bits, self.acc_width, self.weight_bits
        self.tile_cycles = tile_drain_cycles(self.rows, self.cols, k_group)
        lanes = self.rows * k_group
        cols = self.cols
        super().__init__({
            "start": In(1), "busy": Out(1), "beat": Out(1),
            "act_addr": In(ADDR_BITS), "weight_addr": In(ADDR_BITS), "param_addr": In(ADDR_BITS),
            "dst_addr": In(ADDR_BITS), "m": In(SIZE_BITS), "n": In(SIZE_BITS),
            "relu": In(1), "raw": In(1), "to_act": In(1),
            "row_panels": In(SIZE_BITS), "col_panels": In(SIZE_BITS), "groups": In(SIZE_BITS),
            "act_groups": In(SIZE_BITS), "pattern": In(PATTERN_BITS),
            "dst_panel_words": In(SIZE_BITS),
            "act_rd_addr": Out(ADDR_BITS), "act_rd_data": In(act_bits),
            "weight_rd_addr": Out(ADDR_BITS), "weight_rd_data": In(weight_bits),
            "param_rd_addr": Out(ADDR_BITS), "param_rd_en": Out(1),
            "param_rd_data": In(data.ArrayLayout(Requant, cols)),
            "out_wr_addr": Out(ADDR_BITS), "out_wr_en": Out(cols),
            "out_wr_data": Out(data.ArrayLayout(unsigned(acc_width), cols)),
            "act_wr_addr": Out(ADDR_BITS), "act_wr_en": Out(lanes), "act_wr_data": Out(act_bits),
            "act_wr_busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # Operands, held for the whole GEMM.
        held = {name: Signal.like(getattr(self, name), name=f"op_{name}")
                for name in ("act_addr", "weight_addr", "param_addr", "dst_addr", "m", "n", "relu",
                             "raw", "to_act", "row_panels", "col_panels", "groups",
                             "act_groups", "pattern",
                             "dst_panel_words")}
        with m.If(self.start):
            m.d.sync += [sig.eq(getattr(self, name)) for name, sig in held.items()]
        # Derived once per GEMM: what the down-counters reload.
        for name, value in (("groups_last", self.groups - 1), ("col_last", self.col_panels - 1)):
            held[name] = Signal(SIZE_BITS, name=f"op_{name}")
            with m.If(self.start):
                m.d.sync += held[name].eq(value)
        feeding = self._feeder(m, held)
        draining = self._drain(m, held)
        m.d.comb += self.busy.eq(feeding | draining)
        return m

    def _feeder(self, m, op):
        array, shape = self.array, self.shape
        running = Signal()
        # Down-counters (beats of this tile, column panels, row panels left after the current
        # one) and the next row panel's ACT base, all kept in registers: no compare against an
        # operand or add on the path to the buffer addresses.
        g_left, j_left, i_left = Signal(SIZE_BITS), Signal(SIZE_BITS), Signal(SIZE_BITS)
        act_base, act_ptr, weight_ptr = Signal(ADDR_BITS), Signal(ADDR_BITS), Signal(ADDR_BITS)
        next_base = Signal(ADDR_BITS)
        subs = max(shape.k_group // shape.span(p) for p in range(len(shape.patterns)))
        sub = Signal(range(subs))       # the beat's slice of the ACT word (run-time patterns)
        sub_last = Signal(range(subs))  # k_group / span - 1 for the GEMM's pattern
        with m.Switch(op["pattern"]):
            for pid in range(len(shape.patterns)):
                with m.Case(pid):
                    m.d.comb += sub_last.eq(shape.k_group // shape.span(pid) - 1)
        m.submodules.feed = feed = fifo.SyncFIFO(
            width=self.act_bits + self.weight_bits + 1, depth=FEED_DEPTH)
        # Reads in flight: issued (BRAM read), then registered (BRAM data -> fabric register).
        inflight, inflight_last = Signal(READ_LATENCY), Signal(READ_LATENCY)
        inflight_sub = [Signal.like(sub, name=f"inflight_sub{i}") for i in range(READ_LATENCY)]
        # Reads the FIFO still has room for, FEED_DEPTH - 1 - (its level + reads in flight), kept
        # as a counter: a compare of that sum was the 4x4 accelerator's critical path.
        credits = Signal(range(FEED_DEPTH), init=FEED_DEPTH - 1)
        issue = running & (credits != 0)
        popped = feed.r_en & feed.r_rdy
        m.d.sync += credits.eq(credits - issue + popped)
        with m.If(self.start):
            m.d.sync += [running.eq(1), g_left.eq(self.groups - 1), j_left.eq(self.col_panels - 1),
                         i_left.eq(self.row_panels - 1), sub.eq(0),
                         act_base.eq(self.act_addr), act_ptr.eq(self.act_addr),
                         next_base.eq(self.act_addr + self.act_groups),
                         weight_ptr.eq(self.weight_addr)]
        last_group = g_left == 0
        with m.If(issue):
            with m.If(~last_group):
                m.d.sync += [g_left.eq(g_left - 1), weight_ptr.eq(weight_ptr + 1)]
                with m.If(sub == sub_last):
                    m.d.sync += [sub.eq(0), act_ptr.eq(act_ptr + 1)]
                with m.Else():
                    m.d.sync += sub.eq(sub + 1)
            with m.Elif(j_left != 0):
                m.d.sync += [g_left.eq(op["groups_last"]), sub.eq(0), j_left.eq(j_left - 1),
                             act_ptr.eq(act_base), weight_ptr.eq(weight_ptr + 1)]
            with m.Else():
                m.d.sync += [g_left.eq(op["groups_last"]), sub.eq(0), j_left.eq(op["col_last"]),
                             i_left.eq(i_left - 1), act_base.eq(next_base),
                             act_ptr.eq(next_base), next_base.eq(next_base + op["act_groups"]),
                             weight_ptr.eq(op["weight_addr"])]
                with m.If(i_left == 0):
                    m.d.sync += running.eq(0)
        # The buffers read every cycle (no enable to fan out to every block RAM): the data of the
        # address issued now is taken READ_LATENCY cycles later.
        m.d.comb += [self.act_rd_addr.eq(act_ptr), self.weight_rd_addr.eq(weight_ptr)]
        m.d.sync += [inflight.eq(Cat(issue, inflight[:-1])),
                     inflight_last.eq(Cat(last_group, inflight_last[:-1])),
                     inflight_sub[0].eq(sub),
                     *(inflight_sub[i].eq(inflight_sub[i - 1]) for i in range(1, READ_LATENCY))]
        # The buffers' outputs go straight into registers (rtl.banked_memory.READ_LATENCY),
        # reset-less: a reset would put a LUT between the block RAM and the register.
        act_data = Signal.like(self.act_rd_data, name="act_rd_reg", reset_less=True)
        weight_data = Signal.like(self.weight_rd_data, name="weight_rd_reg", reset_less=True)
        m.d.sync += [act_data.eq(self.act_rd_data), weight_data.eq(self.weight_rd_data)]
        fed, fed_last = inflight[-1], inflight_last[-1]
        if shape.runtime:   # the rows' windows, cut in WINDOW_LATENCY registered steps
            act_data = self._runtime_windows(m, op["pattern"], act_data, inflight_sub[-1])
            weight_data = delay(m, weight_data, WINDOW_LATENCY, "weight_windowed",
                                reset_less=True)
            fed = delay(m, fed, WINDOW_LATENCY, "windowed")
            fed_last = delay(m, fed_last, WINDOW_LATENCY, "windowed_last", reset_less=True)
        m.d.comb += [feed.w_en.eq(fed), feed.w_data.eq(Cat(act_data, weight_data, fed_last))]
        # FIFO -> array: one joined beat per cycle.
        act_word = feed.r_data[:self.act_bits]
        weight_word = feed.r_data[self.act_bits:self.act_bits + self.weight_bits]
        beat_last = feed.r_data[self.act_bits + self.weight_bits]
        if shape.runtime:
            m.d.comb += array.act.payload.data.eq(act_word)
            self._runtime_columns(m, weight_word, op["pattern"])
        else:
            m.d.comb += [array.act.payload.data.eq(act_word[:shape.act_data_bits]),
                         array.weight.payload.eq(weight_word)]
            if shape.side_bits:   # mx: the rows' block scales follow the elements
                m.d.comb += array.act.payload.side.eq(act_word[shape.act_data_bits:])
        m.d.comb += [array.act.payload.last.eq(beat_last),
                     array.act.valid.eq(feed.r_rdy), array.weight.valid.eq(feed.r_rdy),
                     feed.r_en.eq(array.act.ready & array.weight.ready & feed.r_rdy),
                     self.beat.eq(array.act.ready & array.weight.ready & feed.r_rdy)]
        return running | inflight.any() | feed.r_rdy

    def _runtime_windows(self, m, pattern, act_word, sub):
        """A run-time design's activation beat, WINDOW_LATENCY cycles after `act_word` and
        `sub`: per row the activation window of the GEMM's pattern (golden.nm.act_windows: lane
        block i holds the M' elements of lane i's group, then the group again reversed as
        filler) cut from slice `sub` of the row's part of the ACT word."""
        shape, aw, group = self.shape, self.act_width, self.k_group
        starts = {(pid, q): q * shape.span(pid) for pid in range(len(shape.patterns))
                  for q in range(group // shape.span(pid))}
        windows = Signal(shape.act_data_bits, name="act_windows", reset_less=True)
        m.d.sync += windows.eq(Cat(*(
            select_window(m, act_word[r * group * aw:(r + 1) * group * aw], pattern, sub, starts,
                          shape.patterns, shape.n, shape.m, aw, registered=True)
            for r in range(self.rows))))
        return windows

    def _runtime_columns(self, m, weight_word, pattern):
        """A run-time design's weight beat: per column the stored values and indices of
        `weight_word` and `pattern` (the GEMM's pattern id, once per PE the column feeds)."""
        shape, array = self.shape, self.array
        for c in range(self.cols):
            column = weight_word[c * shape.column_bits:(c + 1) * shape.column_bits]
            lane = array.weight.payload[c]
            values_bits = len(Value.cast(lane.values))
            m.d.comb += [Value.cast(lane.values).eq(column[:values_bits]),
                         Value.cast(lane.indices).eq(column[values_bits:]),
                         lane.pattern.eq(pattern)]

    def _drain(self, m, op):
        """The array's result rows in the walk's order, through the output stages into OUT or
        (chained) ACT; returns whether the drain is busy."""
        return self._drain_stages(m, op, self._drain_walk(m, op))

    def _drain_walk(self, m, op):
        """Which result row the drain takes when (`take`, the row's values `row`) and where it
        goes: its tile's row `r`, the tile's row_base / col_base, the OUT word of the row's
        first element `row_addr`, the chained ACT word `panel_base + chain_word` and lane
        `chain_off`; `active` while rows of this GEMM are still to come."""
        array, rows, cols, group = self.array, self.rows, self.cols, self.k_group
        active = Signal()      # tiles of this GEMM still to come out of the array
        ti_left, tj_left = Signal(SIZE_BITS), Signal(SIZE_BITS)   # row / column panels left
        r = Signal(range(rows))
        row_base = Signal(SIZE_BITS + 1)   # ti * R
        col_base = Signal(SIZE_BITS + 1)   # tj * C
        panel_base = Signal(ADDR_BITS)     # dst_addr + ti * dst_panel_words
        row_addr = Signal(ADDR_BITS)       # dst_addr + (row_base + r) * n: the row's OUT word
        tile_row_addr = Signal(ADDR_BITS)  # dst_addr + row_base * n: the tile's first row's word
        chain_word = Signal(ADDR_BITS)     # col_base // G: the tile's first chained ACT word
        chain_off = Signal(range(group))   # col_base mod G: its first lane within a row
        with m.If(self.start):
            m.d.sync += [active.eq(1), ti_left.eq(self.row_panels - 1),
                         tj_left.eq(self.col_panels - 1), r.eq(0), row_base.eq(0),
                         col_base.eq(0), panel_base.eq(self.dst_addr), chain_word.eq(0),
                         chain_off.eq(0), row_addr.eq(self.dst_addr),
                         tile_row_addr.eq(self.dst_addr)]
        # Tiles are taken at least `tile_cycles` apart (the chained writer's words per tile).
        spacing = Signal(range(self.tile_cycles + 1))
        spaced = (r != 0) | (spacing == 0)
        take = active & array.result.valid & spaced
        last_row = r == rows - 1
        # ready does not wait for valid (the array joins them): a path from the output queue's
        # valid out to this unit and back to every queue slot's read enable was the 4x4
        # accelerator's critical path
        m.d.comb += array.result.ready.eq(active & spaced & last_row)
        with m.If(take & (r == 0)):
            m.d.sync += spacing.eq(self.tile_cycles - 1)
        with m.Elif(spacing != 0):
            m.d.sync += spacing.eq(spacing - 1)
        # The OUT address advances by n per row (no multiplier on the drain's path): back to the
        # tile's first row for the next column panel, on to the next row for the next row panel.
        with m.If(take):
            m.d.sync += [r.eq(Mux(last_row, 0, r + 1)), row_addr.eq(row_addr + op["n"])]
            with m.If(last_row):
                with m.If(tj_left != 0):
                    m.d.sync += [row_addr.eq(tile_row_addr),
                                 tj_left.eq(tj_left - 1), col_base.eq(col_base + cols),
                                 *self._next_chain_lane(chain_word, chain_off)]
                with m.Else():
                    m.d.sync += [tj_left.eq(op["col_last"]), col_base.eq(0),
                                 ti_left.eq(ti_left - 1), chain_word.eq(0),
                                 chain_off.eq(0), row_base.eq(row_base + rows),
                                 panel_base.eq(panel_base + op["dst_panel_words"]),
                                 tile_row_addr.eq(row_addr + op["n"])]
                    with m.If(ti_left == 0):
                        m.d.sync += active.eq(0)
        return {"active": active, "take": take, "r": r, "row": array.result.payload[r],
                "row_base": row_base, "col_base": col_base, "panel_base": panel_base,
                "chain_word": chain_word, "chain_off": chain_off, "row_addr": row_addr}

    def _next_chain_lane(self, chain_word, chain_off):
        """Statements moving the chained ACT word and lane (`chain_word`, `chain_off`) on by C
        columns: the next column panel's first element."""
        cols, group = self.cols, self.k_group
        wrap = chain_off + cols % group >= group
        return [chain_word.eq(chain_word + cols // group + wrap),
                chain_off.eq(Mux(wrap, chain_off + cols % group - group, chain_off + cols % group))]

    def _drain_stages(self, m, op, walk):
        array, rows, cols, group = self.array, self.rows, self.cols, self.k_group
        take, r, col_base = walk["take"], walk["r"], walk["col_base"]
        # The tile's C PARAM words are read with its first row; the read data holds after.
        m.d.comb += [self.param_rd_addr.eq(op["param_addr"] + col_base),
                     self.param_rd_en.eq(take & (r == 0))]

        # Stage A: the row, its coordinates (the PARAM row arrives now).
        row_base, panel_base, row_addr = walk["row_base"], walk["panel_base"], walk["row_addr"]
        chain_word, chain_off = walk["chain_word"], walk["chain_off"]
        result_shape = walk["row"].shape().elem_shape
        acc_a = [Signal(result_shape, name=f"acc_a{c}") for c in range(cols)]
        valid_a, row_a, r_a = Signal(), Signal(SIZE_BITS + 1), Signal(range(rows))
        col_a, word_a, off_a = Signal(SIZE_BITS + 1), Signal(ADDR_BITS), Signal(range(group))
        addr_a = Signal(ADDR_BITS)
        m.d.sync += [valid_a.eq(take), row_a.eq(row_base + r), r_a.eq(r), col_a.eq(col_base),
                     word_a.eq(panel_base + chain_word), off_a.eq(chain_off),
                     addr_a.eq(row_addr + col_base)]
        m.d.sync += [acc_a[c].eq(walk["row"][c]) for c in range(cols)]
        # Stage B: the OUT address, which lanes are inside m x n, the output stages' inputs.
        out_addr, valid_b = Signal(ADDR_BITS), Signal()
        r_b, word_b, off_b = Signal.like(r_a), Signal.like(word_a), Signal.like(off_a)
        keep_b = Signal(cols)
        m.d.sync += [out_addr.eq(addr_a), valid_b.eq(valid_a),
                     r_b.eq(r_a), word_b.eq(word_a), off_b.eq(off_a),
                     keep_b.eq(Cat(*[(row_a < op["m"]) & (col_a + c < op["n"])
                                     for c in range(cols)]))]
        ys, keeps = [], []
        for c in range(cols):
            param = self.param_rd_data[c]
            acc_b = Signal.like(acc_a[c], name=f"acc_b{c}")
            bias = Signal.like(param.bias, name=f"bias{c}")
            mult = Signal.like(param.mult, name=f"mult{c}")
            shift = Signal.like(param.shift, name=f"shift{c}")
            m.d.sync += [acc_b.eq(acc_a[c]), bias.eq(param.bias), mult.eq(param.mult),
                         shift.eq(param.shift)]
            stage_class = OutputStage if self.shape.kind == "int" else PassThroughStage
            stage = stage_class(self.acc_width, self.act_width, 1)
            m.submodules[f"output_stage{c}"] = stage
            m.d.comb += [stage.valid.eq(valid_b), stage.acc.eq(acc_b), stage.bias.eq(bias),
                         stage.mult.eq(mult), stage.shift.eq(shift), stage.relu.eq(op["relu"]),
                         stage.raw.eq(op["raw"]), stage.tag.eq(keep_b[c])]
            ys.append(stage.y)
            keeps.append(stage.y_tag[0])
            y_valid = stage.y_valid
        # The row's common tag travels beside the output stages.
        y_addr = delay(m, out_addr, STAGE_LATENCY, "y_addr", reset_less=True)
        y_r = delay(m, r_b, STAGE_LATENCY, "y_r", reset_less=True)
        y_word = delay(m, word_b, STAGE_LATENCY, "y_word", reset_less=True)
        y_off = delay(m, off_b, STAGE_LATENCY, "y_off", reset_less=True)
        m.d.comb += [self.out_wr_addr.eq(y_addr),
                     self.out_wr_en.eq(Mux(y_valid & ~op["to_act"], Cat(*keeps), 0))]
        m.d.comb += [self.out_wr_data[c].eq(ys[c]) for c in range(cols)]
        writing = self._chain_writer(m, op, y_valid, ys, keeps, y_r, y_word, y_off)
        pipe = Signal(STAGE_LATENCY)   # valid_b through the output stages
        m.d.sync += pipe.eq(Cat(valid_b, pipe[:-1]))
        return walk["active"] | valid_a | valid_b | pipe.any() | writing

    def _chain_writer(self, m, op, valid, ys, keeps, r, word, off):
        """`to_act`: collects a tile's requantized rows (zero outside m x n); after its last row
        writes the ACT words the tile touches, one per cycle (`chain_words(off)` of them)."""
        rows, cols, group, aw = self.rows, self.cols, self.k_group, self.act_width
        collect = [Signal(cols * aw, name=f"collect{i}") for i in range(rows - 1)]
        tile = [Signal(cols * aw, name=f"tile{i}") for i in range(rows)]
        row = Cat(*[Mux(keeps[c], ys[c][:aw], 0) for c in range(cols)])
        last = valid & op["to_act"] & (r == rows - 1)
        with m.If(valid & op["to_act"]):
            with m.Switch(r):
                for i in range(rows - 1):
                    with m.Case(i):
                        m.d.sync += collect[i].eq(row)
        left = Signal(range(self.tile_cycles + 1))
        writing = Signal()   # left != 0, kept in a register: it gates the load unit's ACT writes
        wq = Signal(range(self.tile_cycles + 1))
        base, tile_off = Signal(ADDR_BITS), Signal(range(group))
        with m.If(last):
            m.d.sync += [*(tile[i].eq(collect[i]) for i in range(rows - 1)), tile[-1].eq(row),
                         base.eq(word), tile_off.eq(off), wq.eq(0)]
            with m.Switch(off):
                for o in chain_offsets(cols, group):
                    with m.Case(o):
                        m.d.sync += [left.eq(chain_words(cols, group, o)), writing.eq(1)]
        with m.Elif(writing):
            m.d.sync += [left.eq(left - 1), wq.eq(wq + 1), writing.eq(left != 1)]
        lanes = rows * group
        data, enable = Signal(lanes * aw), Signal(lanes)
        # Per (offset, word) case, the tile column each lane of a row takes (None: not written).
        columns = {(o, q): [c if 0 <= c < cols else None
                            for c in range(q * group - o, (q + 1) * group - o)]
                   for o in chain_offsets(cols, group) for q in range(chain_words(cols, group, o))}
        # A lane outside the tile is not written: it carries what it carries in another case
        # (no zero to multiplex in; a lane with one source is a wire).
        filler = {}
        for taken in columns.values():
            for lane, c in enumerate(taken):
                if c is not None:
                    filler.setdefault(lane, c)
        with m.Switch(tile_off):
            for o in chain_offsets(cols, group):
                with m.Case(o):
                    with m.Switch(wq):
                        for q in range(chain_words(cols, group, o)):
                            with m.Case(q):
                                taken = columns[o, q]
                                parts = [tile[i][c * aw:(c + 1) * aw] for i in range(rows)
                                         for c in (filler[lane] if c is None else c
                                                   for lane, c in enumerate(taken))]
                                mask = sum(1 << (i * group + lane) for i in range(rows)
                                           for lane, c in enumerate(taken) if c is not None)
                                m.d.comb += [data.eq(Cat(*parts)), enable.eq(mask)]
        m.d.comb += [self.act_wr_addr.eq(base + wq), self.act_wr_data.eq(data),
                     self.act_wr_en.eq(Mux(writing, enable, 0)), self.act_wr_busy.eq(writing)]
        return writing


def window_elements(start, pattern, n, mmax):
    """Which elements of a word the activation window (golden.nm.act_windows) of the beat of
    `pattern` (N', M') starting at element `start` holds: N lane blocks of Mmax, block i the M'
    elements of lane i's group, then that group reversed as filler."""
    np_, mp = pattern
    return [start + (lane // np_) * mp + (t if t < mp else mp - 1 - (t - mp) % mp)
            for lane in range(n) for t in range(mmax)]


def select_window(m, word, pattern, sub, starts, patterns, n, mmax, width, registered=False):
    """The activation window of the beat `starts[(pattern id, sub)]` of `word` (elements of
    `width` bits), both chosen at run time, in two steps: `word` shifted down to the beat's
    first element (a shifter in steps of the starts' common divisor; into a register when
    `registered`, so the window comes a cycle after `word` and `sub`, with `pattern` held), then
    per window element a multiplexer over the elements that position takes under the patterns
    (1 to 7 on a 4:8 design). Two small steps instead of one multiplexer over every (pattern,
    sub) case: a third of the LUTs (4x4 run-time 4:8: 1532 LUT4 per row instead of 3596)."""
    unit = reduce(gcd, starts.values()) or 1   # every start 0: no shift
    offset = Signal(range(max(starts.values()) // unit + 1), name="window_offset")
    with m.Switch(Cat(sub, pattern)):
        for (pid, q), start in starts.items():
            with m.Case(q | pid << len(sub)):
                m.d.comb += offset.eq(start // unit)
    beat = Signal(len(word), name="window_beat", reset_less=registered)
    m.d["sync" if registered else "comb"] += beat.eq(word >> (offset * (unit * width)))
    picks = [window_elements(0, p, n, mmax) for p in patterns]
    window = []
    for pos in range(n * mmax):
        sources = sorted({elements[pos] for elements in picks})
        select = Signal(range(len(sources)), name=f"window_select{pos}")
        with m.Switch(pattern):
            for pid, elements in enumerate(picks):
                with m.Case(pid):
                    m.d.comb += select.eq(sources.index(elements[pos]))
        window.append(Cat(*(beat[e * width:(e + 1) * width] for e in sources))
                      .word_select(select, width))
    return Cat(*window)


def chain_offsets(cols, group):
    """The lane offsets (col_base mod G) a tile of `cols` columns can start at in a chained
    ACT row: multiples of gcd(C, G) below G."""
    return list(range(0, group, gcd(cols, group)))


def chain_words(cols, group, offset):
    """ACT words a chained tile of `cols` columns starting at lane `offset` touches."""
    return -(-(offset + cols) // group)


def tile_drain_cycles(rows, cols, group):
    """Cycles the drain spends per tile: one row per cycle, but at least as many as the chained
    writer's words per tile (G = the ACT K-group)."""
    return max(rows, *(chain_words(cols, group, o) for o in chain_offsets(cols, group)))
