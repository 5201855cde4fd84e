"""The execute unit (rtl.isa GEMM) for the weight-stationary array (rtl.ws_array): the same
operands, buffers, output stages and chained writes as rtl.execute.ExecuteUnit, another walk.

The GEMM's rows go in blocks of up to `shape.acc_rows`; per block, per column panel j, per K-block
kb (one WEIGHT word: the C columns' R K-groups, the dot-product layout) the feeder reads the
weight tile, then every row's ACT word of that K-block (row i's words are act_addr + i*k/G + kb)
and the row's partial sums from the accumulator memory (zero for kb = 0); the array adds the
K-block and returns each row's C sums in order: back into the accumulator, or for the last
K-block into the drain (1 x C tiles in the order block, column panel, row). A row of K-block
kb+1 is read only after its sums of kb are back: beats in flight stay below the block's rows
(a block shorter than the array's round trip waits for it at every K-block).
"""
from amaranth import Cat, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import fifo
from amaranth.lib.memory import Memory

from .banked_memory import BUFFER_ATTRS, READ_LATENCY
from .execute import ExecuteUnit, select_window
from .isa import ADDR_BITS, SIZE_BITS
from .pipeline import delay

WEIGHT_FIFO_DEPTH = 4
ACT_FIFO_DEPTH = 8


class WsExecuteUnit(ExecuteUnit):
    """ExecuteUnit's ports and drain stages; `_feeder` and `_drain_walk` for the
    weight-stationary array (module docstring)."""

    def __init__(self, array, shape):
        super().__init__(array, shape)
        self.block = shape.acc_rows
        self.psum_bits = Shape.cast(array.psum_layout).width   # one column's partial sum

    def _feeder(self, m, op):
        array, shape, cols = self.array, self.shape, self.cols
        acc_bits = cols * self.psum_bits
        m.submodules.acc_mem = acc_mem = Memory(shape=unsigned(acc_bits), depth=self.block,
                                                init=[], attrs=BUFFER_ATTRS)
        self._acc_wr = acc_mem.write_port()
        acc_rd = acc_mem.read_port()

        running, tile_next = Signal(), Signal()   # tile_next: the next slot reads a weight tile
        rows_left = Signal(SIZE_BITS)     # GEMM rows after the current block
        block_last = Signal(range(self.block))   # rows in the current block - 1
        i, j_left, kb = Signal(range(self.block)), Signal(SIZE_BITS), Signal(SIZE_BITS)
        weight_ptr, act_ptr = Signal(ADDR_BITS), Signal(ADDR_BITS)
        kb_base, block_base = Signal(ADDR_BITS), Signal(ADDR_BITS)   # row 0's word of kb / kb 0
        # rows read and not yet back: below the block's rows, or (one K-block) whatever the
        # reads in flight, the FIFO and the array's output FIFO hold
        pending = Signal(range(max(self.block, READ_LATENCY + ACT_FIFO_DEPTH
                                   + array.result_depth) + 1))
        # Run-time patterns: an ACT word holds several K-blocks of the GEMM's pattern; `sub`
        # is the K-block's slice of it (0 on a fixed design).
        subs = max(shape.k_group // shape.span(p) for p in range(len(shape.patterns)))
        sub, sub_last = Signal(range(subs)), Signal(range(subs))
        with m.Switch(op["pattern"]):
            for pid in range(len(shape.patterns)):
                with m.Case(pid):
                    m.d.comb += sub_last.eq(shape.k_group // shape.span(pid) - 1)
        m.submodules.weights = weights = fifo.SyncFIFO(width=self.weight_bits,
                                                       depth=WEIGHT_FIFO_DEPTH)
        # `first`; `final` for an array that finishes its sums; `block_last` when they close
        # scale blocks (mx)
        closes = "block_last" in array.act.payload.shape().members
        flags = 1 + array.finishes + closes
        m.submodules.acts = acts = fifo.SyncFIFO(width=self.act_bits + acc_bits + flags + len(sub),
                                                 depth=ACT_FIFO_DEPTH)
        w_credits = Signal(range(WEIGHT_FIFO_DEPTH + 1), init=WEIGHT_FIFO_DEPTH)
        a_credits = Signal(range(ACT_FIFO_DEPTH + 1), init=ACT_FIFO_DEPTH)

        with m.If(self.start):
            m.d.sync += [running.eq(1), tile_next.eq(1), i.eq(0), kb.eq(0), sub.eq(0),
                         j_left.eq(self.col_panels - 1),
                         rows_left.eq(_rows_after(self.row_panels, self.block)),
                         block_last.eq(_block_last(self.row_panels, self.block)),
                         weight_ptr.eq(self.weight_addr), act_ptr.eq(self.act_addr),
                         kb_base.eq(self.act_addr), block_base.eq(self.act_addr)]
        single = op["groups_last"] == 0      # one K-block: no partial sums to wait for
        issue_tile = running & tile_next & (w_credits != 0)
        issue_row = running & ~tile_next & (a_credits != 0) & \
            (single | (pending <= block_last))
        returned = array.result.valid & array.result.ready
        m.d.sync += [w_credits.eq(w_credits - issue_tile + (weights.r_en & weights.r_rdy)),
                     a_credits.eq(a_credits - issue_row + (acts.r_en & acts.r_rdy)),
                     pending.eq(pending + issue_row - returned)]
        with m.If(issue_tile):
            m.d.sync += [tile_next.eq(0), weight_ptr.eq(weight_ptr + 1)]
        last_row, last_kb = i == block_last, kb == op["groups_last"]
        with m.If(issue_row):
            m.d.sync += [i.eq(i + 1), act_ptr.eq(act_ptr + op["act_groups"])]
            with m.If(last_row):
                m.d.sync += [i.eq(0), tile_next.eq(1)]
                with m.If(~last_kb):        # next K-block of the same column panel
                    m.d.sync += kb.eq(kb + 1)
                    with m.If(sub == sub_last):
                        m.d.sync += [sub.eq(0), kb_base.eq(kb_base + 1), act_ptr.eq(kb_base + 1)]
                    with m.Else():
                        m.d.sync += [sub.eq(sub + 1), act_ptr.eq(kb_base)]
                with m.Elif(j_left != 0):   # next column panel: K-block 0 of the block again
                    m.d.sync += [kb.eq(0), sub.eq(0), j_left.eq(j_left - 1),
                                 kb_base.eq(block_base), act_ptr.eq(block_base)]
                with m.Else():              # next block of rows: after this row's last word
                    after = act_ptr + 1
                    m.d.sync += [kb.eq(0), sub.eq(0), j_left.eq(op["col_last"]), kb_base.eq(after),
                                 block_base.eq(after), act_ptr.eq(after),
                                 weight_ptr.eq(op["weight_addr"]),
                                 rows_left.eq(_rows_after(rows_left, self.block)),
                                 block_last.eq(_block_last(rows_left, self.block))]
                    with m.If(rows_left == 0):
                        m.d.sync += running.eq(0)

        # Reads: ACT and the partial sums for a row slot, WEIGHT for a tile slot; their data is
        # registered out of the block RAM (READ_LATENCY), then queued for the array.
        m.d.comb += [self.act_rd_addr.eq(act_ptr), self.weight_rd_addr.eq(weight_ptr),
                     acc_rd.addr.eq(i)]
        tile_in = delay_bits(m, issue_tile, READ_LATENCY, "tile_inflight")
        row_in = delay_bits(m, issue_row, READ_LATENCY, "row_inflight")
        first_in = delay_bits(m, issue_row & (i == 0), READ_LATENCY, "first_inflight")
        zero_in = delay_bits(m, issue_row & (kb == 0), READ_LATENCY, "zero_inflight")
        final_in = (delay_bits(m, issue_row & last_kb, READ_LATENCY, "final_inflight")[-1:]
                    if array.finishes else [])
        if closes:   # the K-block ends a scale block: K-blocks per block are a power of two
            per_block = shape.block_size // shape.span()
            block_last = (kb & (per_block - 1)) == per_block - 1
            final_in = Cat(final_in, delay_bits(m, issue_row & block_last, READ_LATENCY,
                                                "block_last_inflight")[-1])
        sub_in = delay(m, sub, READ_LATENCY, "sub_inflight", reset_less=True)
        act_data = Signal.like(self.act_rd_data, name="act_rd_reg", reset_less=True)
        weight_data = Signal.like(self.weight_rd_data, name="weight_rd_reg", reset_less=True)
        psum_data = Signal(acc_bits, name="psum_rd_reg", reset_less=True)
        m.d.sync += [act_data.eq(self.act_rd_data), weight_data.eq(self.weight_rd_data),
                     psum_data.eq(acc_rd.data)]
        m.d.comb += [weights.w_en.eq(tile_in[-1]), weights.w_data.eq(weight_data),
                     acts.w_en.eq(row_in[-1]),
                     acts.w_data.eq(Cat(act_data, Mux(zero_in[-1], 0, psum_data), first_in[-1],
                                        final_in, sub_in))]

        # FIFOs -> array.
        psum_at = self.act_bits
        first_at = psum_at + acc_bits
        if array.finishes:
            m.d.comb += array.act.payload.final.eq(acts.r_data[first_at + 1])
        if closes:
            m.d.comb += [array.act.payload.block_last.eq(acts.r_data[first_at + 2]),
                         array.act.payload.side.eq(acts.r_data[shape.act_data_bits:
                                                               self.act_bits])]
        if shape.runtime:
            self._runtime_tile(m, op["pattern"], acts.r_data[:self.act_bits], weights.r_data,
                               acts.r_data[first_at + flags:])
        else:
            m.d.comb += [array.weight.payload.eq(weights.r_data),
                         array.act.payload.data.eq(acts.r_data[:shape.act_data_bits])]
        m.d.comb += [array.weight.valid.eq(weights.r_rdy), weights.r_en.eq(array.weight.ready),
                     array.act.payload.psum.eq(acts.r_data[psum_at:first_at]),
                     array.act.payload.first.eq(acts.r_data[first_at]),
                     array.act.valid.eq(acts.r_rdy), acts.r_en.eq(array.act.ready),
                     self.beat.eq(array.act.valid & array.act.ready)]
        return running | tile_in.any() | row_in.any() | weights.r_rdy | acts.r_rdy

    def _runtime_tile(self, m, pattern, act_word, weight_word, sub):
        """Run-time patterns: PE row r's activation window (golden.nm.act_windows: lane
        block l holds the M' elements of lane l's group, then the group reversed as filler) for
        beat r of K-block `sub` of the ACT word; per column the tile's values and indices as
        stored and the GEMM's pattern id for every PE row."""
        array, shape, aw = self.array, self.shape, self.act_width
        rows = shape.beat_groups
        for r in range(rows):
            starts = {(pid, q): (q * rows + r) * (shape.span(pid) // rows)   # one PE row's beat
                      for pid in range(len(shape.patterns))
                      for q in range(shape.k_group // shape.span(pid))}
            m.d.comb += Value.cast(array.act.payload.data[r]).eq(select_window(
                m, act_word, pattern, sub, starts, shape.patterns, shape.n, shape.m, aw))
        id_bits = len(array.weight.payload[0].pattern) // rows
        self._runtime_columns(m, weight_word, Cat(*[pattern[:id_bits]] * rows))

    def _drain_walk(self, m, op):
        """Every result row of the array, in issue order (block, column panel, K-block, row):
        back into the accumulator memory, or for the last K-block to the output stages as the
        1 x C tile (block_first + i, j)."""
        array, cols, group = self.array, self.cols, self.k_group
        active = Signal()
        i, kb, j_left = Signal(range(self.block)), Signal(SIZE_BITS), Signal(SIZE_BITS)
        rows_left, block_last = Signal(SIZE_BITS), Signal(range(self.block))
        row_base = Signal(SIZE_BITS + 1)           # the row's index in the GEMM
        col_base = Signal(SIZE_BITS + 1)           # j * C
        row_addr, panel_base = Signal(ADDR_BITS), Signal(ADDR_BITS)   # dst + row*n, + row*dpw
        block_row, block_addr, block_panel = Signal(SIZE_BITS + 1), Signal(ADDR_BITS), Signal(ADDR_BITS)
        chain_word, chain_off = Signal(ADDR_BITS), Signal(range(group))

        with m.If(self.start):
            m.d.sync += [active.eq(1), i.eq(0), kb.eq(0), j_left.eq(self.col_panels - 1),
                         rows_left.eq(_rows_after(self.row_panels, self.block)),
                         block_last.eq(_block_last(self.row_panels, self.block)),
                         row_base.eq(0), col_base.eq(0), row_addr.eq(self.dst_addr),
                         panel_base.eq(self.dst_addr), block_row.eq(0),
                         block_addr.eq(self.dst_addr), block_panel.eq(self.dst_addr),
                         chain_word.eq(0), chain_off.eq(0)]
        last_kb = kb == op["groups_last"]
        # Tiles into the drain at least tile_cycles apart (the chained writer's words per tile).
        spacing = Signal(range(self.tile_cycles + 1))
        m.d.comb += array.result.ready.eq(active & (~last_kb | (spacing == 0)))
        returned = array.result.valid & array.result.ready
        take = returned & last_kb
        with m.If(take):
            m.d.sync += spacing.eq(self.tile_cycles - 1)
        with m.Elif(spacing != 0):
            m.d.sync += spacing.eq(spacing - 1)
        psums, row = ((array.result.payload.psum, array.result.payload.value) if array.finishes
                      else (array.result.payload, array.result.payload))
        m.d.comb += [self._acc_wr.addr.eq(i), self._acc_wr.data.eq(psums),
                     self._acc_wr.en.eq(returned & ~last_kb)]

        last_row = i == block_last
        with m.If(returned):
            m.d.sync += i.eq(Mux(last_row, 0, i + 1))
            with m.If(last_row & ~last_kb):
                m.d.sync += kb.eq(kb + 1)
        with m.If(take):
            m.d.sync += [row_base.eq(row_base + 1), row_addr.eq(row_addr + op["n"]),
                         panel_base.eq(panel_base + op["dst_panel_words"])]
            with m.If(last_row):
                m.d.sync += kb.eq(0)
                with m.If(j_left != 0):     # the block's rows again, next column panel
                    m.d.sync += [j_left.eq(j_left - 1), col_base.eq(col_base + cols),
                                 row_base.eq(block_row), row_addr.eq(block_addr),
                                 panel_base.eq(block_panel),
                                 *self._next_chain_lane(chain_word, chain_off)]
                with m.Else():              # the next block
                    m.d.sync += [j_left.eq(op["col_last"]), col_base.eq(0), chain_word.eq(0),
                                 chain_off.eq(0), block_row.eq(row_base + 1),
                                 block_addr.eq(row_addr + op["n"]),
                                 block_panel.eq(panel_base + op["dst_panel_words"]),
                                 rows_left.eq(_rows_after(rows_left, self.block)),
                                 block_last.eq(_block_last(rows_left, self.block))]
                    with m.If(rows_left == 0):
                        m.d.sync += active.eq(0)
        r = Signal(range(1))
        return {"active": active, "take": take, "r": r, "row": row,
                "row_base": row_base, "col_base": col_base, "panel_base": panel_base,
                "chain_word": chain_word, "chain_off": chain_off, "row_addr": row_addr}


def _rows_after(left, block):
    """GEMM rows after a block taken from `left` rows (blocks of up to `block` rows)."""
    return Mux(left > block, left - block, 0)


def _block_last(left, block):
    """The last row index of the block taken from `left` rows."""
    return Mux(left > block, block - 1, left - 1)


def delay_bits(m, value, cycles, name):
    """`value` (1 bit) through a shift register of `cycles` stages; bit cycles-1 is the delayed
    value, `.any()` says one is in flight."""
    bits = Signal(cycles, name=name)
    m.d.sync += bits.eq(Cat(value, bits[:-1]))
    return bits
