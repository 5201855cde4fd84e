"""R x C output-stationary systolic array computing C = A x W with W in N:M compressed form.

Streams (amaranth.lib.stream, valid/ready):
  act     in : one group of M activations per array row (`data[r][j]`), plus `last` marking the
               final K-group of the current output tile; `side[r]` when the PE kind's MAC has a
               per-row side input (e.g. an MX block scale).
  weight  in : per array column, N weight values + the decoder's metadata (N indices or an M-bit
               bitmap; none when dense) of the same K-group, + `side` when the MAC has a
               per-column side input.
  result  out: the finished R x C output tile (`[r][c]`, signed acc_width).
One beat of each input stream is joined per cycle; every multiplier does one MAC per beat, so the
array reduces R*C*M dense-equivalent MACs per cycle. Tiles are pipelined back to back: the next
tile's beats are accepted while the previous tile drains, and finished tiles wait in an output
queue (`result_depth` tiles deep) for the consumer: a small FIFO beside each PE, written when the
PE publishes its result (so every write enable is local to its PE) and read in step with the
others when the bottom-right PE's FIFO, the last to receive a tile, has it. A tile's `last` beat
is admitted while fewer than `result_depth` + 1 tiles are outstanding (admitted, not yet taken):
one slot per queue entry, plus the PEs' own result registers, which hold a finished result until
its FIFO has room. With a ready consumer, tiles of at least R+C-1 beats stream without a stall
(shorter ones as fast as the queue depth allows).

Activations enter row r after r cycles of skew and move right one PE per cycle; weights (with
the valid/last control) enter column c after c cycles and move down. `overflow` and `meta_error`
are sticky until reset; `bad_groups` counts malformed metadata groups (column x K-group), as
the top row's decoders see them.
"""
from amaranth import Cat, ClockSignal, Instance, Module, ResetSignal, Signal, Value
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import delay

BAD_GROUP_COUNTER_WIDTH = 32


def result_queue_depth(tile_beats, latency):
    """Output queue depth (tiles) that lets tiles of `tile_beats` beats or more stream without a
    stall when the consumer is always ready: a tile stays outstanding for `latency` cycles after
    its `last` beat, so latency // tile_beats tiles overlap, and the PEs' result registers hold
    one more."""
    return max(1, latency // tile_beats)


def act_layout(rows, group, side=None):
    """Per row, one PE `act` group (+ the MAC's row side value), and `last`."""
    fields = {"data": data.ArrayLayout(group, rows), "last": 1}
    if side is not None:
        fields["side"] = data.ArrayLayout(side, rows)
    return data.StructLayout(fields)


def result_layout(rows, cols, result_shape):
    return data.ArrayLayout(data.ArrayLayout(result_shape, cols), rows)


class ResultSlot(wiring.Component):
    """One PE's share of the output queue: a FIFO of `depth` results of `width` bits, written
    when the PE publishes its result (`result_valid`) or, if the FIFO is full then, as soon as it
    has room (meanwhile the result waits in the PE's register: `held`); read on `take`, in step
    with the other slots. `data`/`ready`: the oldest result and whether there is one. A result
    written in one cycle is readable in the next."""

    def __init__(self, width, depth):
        self.width, self.depth = width, depth
        super().__init__({"result": In(width), "result_valid": In(1), "take": In(1),
                          "data": Out(width), "ready": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.queue = queue = fifo.SyncFIFO(width=self.width, depth=self.depth)
        held = Signal()
        capture = self.result_valid | held
        m.d.comb += [queue.w_data.eq(self.result), queue.w_en.eq(capture), queue.r_en.eq(self.take),
                     self.data.eq(queue.r_data), self.ready.eq(queue.r_rdy)]
        m.d.sync += held.eq(capture & ~queue.w_rdy)
        return m


class SparseArray(wiring.Component):
    """The generated top level. `make_pe()` builds the PE (rtl.pe.SparsePE: a PE kind's MAC unit
    behind a decoder of the chosen metadata encoding), kept as `pe`; beside each PE sits a
    `ResultSlot` of the output queue. Every position instantiates the same two modules,
    `<name>.pe` and `<name>.result_slot` (`shared_modules`: module name -> component), so the
    design holds one definition of each however large the array; converting the array must
    define them (gen.elaborate.to_verilog does). `pes[r][c]` / `slots[r][c]`: the ports of the
    instances at row r, column c (signals `pe_<r>_<c>__<port>`, `result_slot_<r>_<c>__<port>`).
    The instances take the `sync` domain's clock and reset as module ports: to reset or enable
    the array under a condition, rename its domain to one whose reset includes the condition
    (DomainRenamer); a ResetInserter or EnableInserter would not reach into the instances.
    Latency from the `last` beat's transfer to `result.valid`: `latency` cycles (skew R-1 + C-1,
    plus the PE pipeline, plus the output queue's write). `result_depth`: tiles the output
    queue holds (default `result_queue_depth`)."""

    def __init__(self, rows, cols, make_pe, result_depth=None, name="array"):
        self.rows, self.cols = rows, cols
        self.pe = make_pe()
        pe = self.pe
        self.n, self.m = pe.n, pe.m
        self.latency = self.entry_delay() + pe.latency + 1
        self.result_depth = (result_queue_depth(self.streaming_tile_beats(), self.latency)
                             if result_depth is None
                             else result_depth)
        self.result_slot = ResultSlot(len(Value.cast(pe.result)), self.result_depth)
        self.shared_modules = {f"{name}.pe": pe, f"{name}.result_slot": self.result_slot}
        self.pes = [[pe.signature.create(path=(f"pe_{r}_{c}",)) for c in range(cols)]
                    for r in range(rows)]
        self.slots = [[self.result_slot.signature.create(path=(f"result_slot_{r}_{c}",))
                       for c in range(cols)] for r in range(rows)]
        self._share_neighbour_ports()
        group = pe.signature.members["act"].shape
        super().__init__({
            "act": In(stream.Signature(act_layout(rows, group, pe.act_side_layout))),
            "weight": In(stream.Signature(data.ArrayLayout(pe.weight_layout, cols))),
            "result": Out(stream.Signature(result_layout(rows, cols, pe.result_shape))),
            "overflow": Out(1),
            "meta_error": Out(1),
            "bad_groups": Out(BAD_GROUP_COUNTER_WIDTH),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols

        # Join the two input streams; a `last` beat waits for a free slot.
        outstanding = Signal(range(self.result_depth + 2))  # tiles admitted and not yet taken
        may_take = ~self.act.payload.last | (outstanding <= self.result_depth)
        m.d.comb += [self.act.ready.eq(self.weight.valid & may_take),
                     self.weight.ready.eq(self.act.valid & may_take)]
        beat = Signal()
        m.d.comb += beat.eq(self.act.valid & self.weight.valid & may_take)
        admit_last = beat & self.act.payload.last
        taken = self.result.valid & self.result.ready
        with m.If(admit_last & ~taken):
            m.d.sync += outstanding.eq(outstanding + 1)
        with m.Elif(taken & ~admit_last):
            m.d.sync += outstanding.eq(outstanding - 1)

        pes, slots = self.pes, self.slots
        pe_module, slot_module = self.shared_modules
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = _instance(pe_module, self.pe, pes[r][c])
                m.submodules[f"result_slot_{r}_{c}"] = _instance(slot_module, self.result_slot,
                                                                 slots[r][c])

        self._enter(m, beat)

        # Output queue: one small FIFO beside each PE (its ResultSlot). A PE's result goes in
        # when the PE publishes it (or, if its FIFO is full, as soon as it has room: the admission
        # rule keeps the next tile out of the PE until then), so every write enable stays local;
        # all FIFOs are read in step, when the bottom-right one (the last to receive a tile) has it.
        last_slot = slots[-1][-1]
        m.d.comb += [self.result.valid.eq(last_slot.ready),
                     slots[0][0].take.eq(self.result.ready & last_slot.ready),
                     self.result.payload.eq(Cat(slot.data for row in slots for slot in row))]

        # Sticky overflow: one registered OR per row, then across rows.
        row_overflow = Signal(rows)
        m.d.sync += [row_overflow[r].eq(Cat(pe.overflow for pe in pes[r]).any()) for r in range(rows)]
        with m.If(row_overflow.any()):
            m.d.sync += self.overflow.eq(1)

        self._count_malformed(m)
        return m

    def entry_delay(self):
        """Cycles from a beat's entry to the input ports of the last PE it reaches (the skew)."""
        return (self.rows - 1) + (self.cols - 1)

    def streaming_tile_beats(self):
        """The shortest tiles the default output queue streams without a stall: R+C-1 beats (a
        queue slot per PE: deeper would cost R*C times over)."""
        return self.rows + self.cols - 1

    def _enter(self, m, beat):
        """Drive the edge PEs' inputs from the joined beat: skewed entry, row r after r cycles,
        column c after c (the neighbour-to-neighbour forwarding is in the port sharing)."""
        pes = self.pes
        for r in range(self.rows):
            m.d.comb += pes[r][0].act.eq(delay(m, self.act.payload.data[r], r, f"act_skew{r}_", reset_less=True))
            if self.pe.act_side_layout is not None:
                side = delay(m, self.act.payload.side[r], r, f"act_side_skew{r}_", reset_less=True)
                m.d.comb += pes[r][0].act_side.eq(side)
        for c in range(self.cols):
            weight = delay(m, self.weight.payload[c], c, f"weight_skew{c}_", reset_less=True)
            valid = delay(m, beat, c, f"valid_skew{c}_", reset_less=False)
            last = delay(m, self.act.payload.last, c, f"last_skew{c}_", reset_less=False)
            m.d.comb += [pes[0][c].weight.eq(weight), pes[0][c].valid.eq(valid), pes[0][c].last.eq(last)]

    def _share_neighbour_ports(self):
        """Ports that carry the same value share one signal: a PE's `act` (`act_side`) is its
        left neighbour's `act_out` (`act_side_out`), its `weight`, `valid` and `last` are the
        `*_out` of the PE above; a slot's `result` and `result_valid` are its PE's, and every
        slot's `take` is one signal. (Connected by assignment, the Verilog would hold a copy of
        each and generation would take longer: 512 instances at 16x16.)"""
        pes, slots = self.pes, self.slots
        side = self.pe.act_side_layout is not None
        for r, row in enumerate(pes):
            for c, pe in enumerate(row):
                if c > 0:
                    pe.act = row[c - 1].act_out
                    if side:
                        pe.act_side = row[c - 1].act_side_out
                if r > 0:
                    above = pes[r - 1][c]
                    pe.weight, pe.valid, pe.last = above.weight_out, above.valid_out, above.last_out
                slot = slots[r][c]
                slot.result, slot.result_valid, slot.take = pe.result, pe.result_valid, slots[0][0].take

    def _count_malformed(self, m):
        """Flag and count the malformed metadata groups the top row's decoders see (each
        column's beats pass its top PE exactly once); PEs whose beats hold several groups
        (a `bad_groups` output) add their count, the others one per malformed beat."""
        top = self.pes[0]
        if "bad_groups" in top[0].signature.members:
            counts = [Signal.like(pe.bad_groups, name=f"bad_groups_col{c}")
                      for c, pe in enumerate(top)]
            m.d.sync += [count.eq(pe.bad_groups) for count, pe in zip(counts, top)]
            bad = Cat(count != 0 for count in counts)
        else:
            bad = Signal(self.cols)
            m.d.sync += bad.eq(Cat(pe.malformed for pe in top))
            counts = [bad[c] for c in range(self.cols)]
        with m.If(bad.any()):
            m.d.sync += [self.meta_error.eq(1), self.bad_groups.eq(self.bad_groups + sum(counts))]


def count_bad_groups(m, rows, counter, flag):
    """Add the bad-group counts of `rows` (lists of registered per-PE counts) to `counter` and set
    `flag` when there is one, pipelined for wide arrays: each row's sum is registered, then their
    total, then the counter adds it (3 cycles later than the counts)."""
    row_sums = []
    for r, row in enumerate(rows):
        total = sum(row)
        row_sum = Signal(range(_max_value(row) + 1), name=f"bad_row{r}")
        m.d.sync += row_sum.eq(total)
        row_sums.append(row_sum)
    total = Signal(range(_max_value(row_sums) + 1), name="bad_total")
    m.d.sync += total.eq(sum(row_sums))
    with m.If(total != 0):
        m.d.sync += [flag.eq(1), counter.eq(counter + total)]


def _max_value(values):
    return sum((1 << len(Value.cast(v))) - 1 for v in values)


def _instance(module, component, ports):
    """An instance of `module` (the conversion of `component`) wired to `ports`, an interface of
    `component`'s signature, and to the `sync` domain's clock and reset."""
    connections = {}
    for path, member, value in component.signature.flatten(ports):
        direction = "i" if member.flow == In else "o"
        connections[f"{direction}_{'__'.join(map(str, path))}"] = Value.cast(value)
    return Instance(module, i_clk=ClockSignal(), i_rst=ResetSignal(allow_reset_less=True),
                    **connections)


class DotProductArray(SparseArray):
    """The dot-product (reduction tree) dataflow: `cols` PEs side by side, each owning one output
    of a 1 x cols tile. A beat is one activation row's `groups` consecutive K-groups
    (`groups`*M activations, broadcast to every PE, no skew) and, per column, those groups'
    compressed weights; each PE (`make_pe()`: the kind's MAC unit of `groups`*N multipliers and
    its adder tree behind a rtl.decoder.GroupedDecoder) reduces the whole beat per cycle. Streams,
    result queue, flags and counters are the SparseArray's with R = 1 (`bad_groups` counts
    every malformed group of a beat). Latency from the `last` beat to `result.valid`: the PE
    pipeline + 2 (`latency`)."""

    def __init__(self, groups, cols, make_pe, result_depth=None, name="array"):
        self.groups = groups
        super().__init__(1, cols, make_pe, result_depth, name)

    def entry_delay(self):
        return 1   # one register stage, no skew

    def streaming_tile_beats(self):
        """One: C queue slots only, so even one-beat tiles (K = rows*M) stream."""
        return 1

    def _enter(self, m, beat):
        """Every PE gets the beat in the same cycle: one register stage (the PEs' own input
        registers follow), the activations shared by all."""
        row = self.pes[0]
        act = delay(m, self.act.payload.data[0], 1, "act_in", reset_less=True)
        m.d.comb += row[0].act.eq(act)
        if self.pe.act_side_layout is not None:
            side = delay(m, self.act.payload.side[0], 1, "act_side_in", reset_less=True)
            m.d.comb += row[0].act_side.eq(side)
        valid = delay(m, beat, 1, "valid_in", reset_less=False)
        last = delay(m, self.act.payload.last, 1, "last_in", reset_less=False)
        for c, pe in enumerate(row):
            weight = delay(m, self.weight.payload[c], 1, f"weight_in{c}_", reset_less=True)
            m.d.comb += [pe.weight.eq(weight), pe.valid.eq(valid), pe.last.eq(last)]

    def _count_malformed(self, m):
        """Each PE's count of its beat's malformed groups (all PEs see their column's beats
        once), registered, then summed in a pipeline (count_bad_groups: a beat holds
        `groups`*C groups)."""
        row = self.pes[0]
        counts = [Signal.like(pe.bad_groups, name=f"bad_groups_col{c}") for c, pe in enumerate(row)]
        m.d.sync += [count.eq(pe.bad_groups) for count, pe in zip(counts, row)]
        count_bad_groups(m, [counts], self.bad_groups, self.meta_error)

    def _share_neighbour_ports(self):
        """Every PE's `act` (`act_side`) is one signal; a slot's `result` and `result_valid` are
        its PE's, every slot's `take` one signal."""
        row, slots = self.pes[0], self.slots[0]
        side = self.pe.act_side_layout is not None
        for c, pe in enumerate(row):
            if c > 0:
                pe.act = row[0].act
                if side:
                    pe.act_side = row[0].act_side
            slot = slots[c]
            slot.result, slot.result_valid, slot.take = pe.result, pe.result_valid, slots[0].take
