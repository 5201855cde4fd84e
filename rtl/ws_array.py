"""R x C weight-stationary systolic array: PE (r, c) holds the compressed weights of K-group r of a
K-block for output column c; activations stream through the rows, partial sums flow down the
columns.

Streams (amaranth.lib.stream, valid/ready):
  weight in : one weight tile per transfer: per column, the R K-groups of one K-block (N*R values,
              then each group's metadata in turn: rtl.decoder.grouped_metadata, the dot-product
              array's weight beat); PE (r, c) takes group r of column c into its shadow register.
              Taken when the shadow registers are free: the tile before has been taken into use
              by every PE ((R-1)*hop+C-1 cycles after its first beat), so the next tile
              loads while the current one computes.
  act    in : one activation row's K-block: `data[r]` the M activations of group r; `psum[c]` the
              partial sum the beat adds to for column c (the sums of the K-blocks before); `first`
              = the beat starts using the last loaded tile (it waits until a tile is loaded).
  result out: per beat, psum[c] + the N kept products of PE (0, c), then of PE (1, c), ... added
              group by group in K order under the overflow policy (so wrap and saturate give what
              the output-stationary array's accumulator gives for the same K order).
Partial sums are the PE kind's (rtl.ws_partials): integers (int, scalable, bit-serial) or
records finished after the bottom row (fp, mx, posit, mpgemm: rounded, or a block closed when
the beat is `block_last`, with the fields the kind reads from act beats and tile columns): act
beats then carry `final` (the last K-block: its flags raise `overflow`) and results are
{psum, value}. A MAC with a weight side value (bit-serial: the plane) gets the tile column's.
One beat per cycle. Activations enter row r after r*hop cycles and move right one PE per cycle;
each column's psum enters its top PE when that PE's products are ready and moves down one PE
per hop cycles (hop = 1, or the kind's pipelined adder + 1: FP32 accumulation); the bottom
row's sums are re-aligned and written to an output FIFO of `latency` + 1 beats (admission
keeps that many beats outstanding, so a ready consumer never stalls the array).
`overflow` and `meta_error` are sticky until reset; `bad_groups` counts the malformed metadata
groups of every tile each time a tile is taken into use (its `first` beat). With run-time
patterns (rtl.decoder.RuntimeNMDecoder in every PE) PE row r holds beat r of the K-block (its N
values, indices and pattern id) and `data[r]` is that beat's activation window.
Latency: `latency` cycles from a beat's transfer to its result at `result`.
"""
from amaranth import Cat, Module, Mux, Shape, Signal, Value
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .decoder import grouped_metadata, metadata_ports
from .mac_array import BAD_GROUP_COUNTER_WIDTH, count_bad_groups
from .pe import weight_layout
from .pipeline import delay


def tile_column_layout(pe, groups):
    """One column of a weight tile: N*groups values, then the groups' metadata fields, then the
    MAC's weight side value when it has one (one for the column: every PE row's)."""
    side = {"side": pe.side_shape} if pe.side_shape is not None else {}
    return data.StructLayout({"values": data.ArrayLayout(pe.weight_shape, pe.n * groups),
                              **grouped_metadata(pe.decoder, groups), **side})


class StationaryPE(wiring.Component):
    """One weight-stationary PE: `load` writes `weight` (N values + the decoder's metadata) into
    the shadow register; a valid beat with `first` moves the shadow into the active register as
    it enters. Per valid beat: psum_out = `partial`.add(psum, the MAC unit's exact sum of the N
    kept products) (the kind's MAC, every beat `last`: rtl.mac_int.IntMac wide enough that one
    beat's sum is exact, or rtl.mac_fp.FpMac with `beat_sums`); `overflow` pulses when an
    integer sum leaves the range. `act`/`valid`/`first` are forwarded right, registered
    (`*_out`). `malformed`: the active weights' metadata is malformed, on a `first` beat at the
    decoder (`bad_groups`: how many groups, for decoders whose beat holds several).
    Timing: `psum` must arrive `psum_lag` cycles after the beat at `act`; `psum_out` follows
    `psum_hop` cycles later (1, or the kind's adder pipeline + 1: `partial.hop`)."""

    def __init__(self, mac, decoder, partial):
        self.mac, self.decoder, self.partial = mac, decoder, partial
        self.n, self.m = decoder.n, decoder.m
        mac_ports = mac.signature.members
        self.act_shape = mac_ports["a"].shape.elem_shape
        self.weight_shape = mac_ports["w"].shape.elem_shape
        self.psum_lag = 2 + mac.latency   # input register, decoded operands, the MAC
        self.psum_hop = partial.hop
        # the MAC's per-column side value (e.g. a bit-plane index), held with the weights
        self.side_shape = mac_ports["w_side"].shape if "w_side" in mac_ports else None
        self.weight_layout = weight_layout(self.n, self.weight_shape, metadata_ports(decoder),
                                           self.side_shape)
        group = decoder.signature.members["group"].shape
        super().__init__({
            "act": In(group), "valid": In(1), "first": In(1),
            "act_out": Out(group), "valid_out": Out(1), "first_out": Out(1),
            "load": In(1), "weight": In(self.weight_layout),
            "psum": In(partial.layout), "psum_out": Out(partial.layout),
            "overflow": Out(1), "malformed": Out(1),
            **({"bad_groups": Out(decoder.signature.members["bad_groups"].shape)}
               if "bad_groups" in decoder.signature.members else {}),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = decoder = self.decoder
        m.submodules.mac = mac = self.mac
        shadow = Signal(self.weight_layout)
        active = Signal(self.weight_layout)
        with m.If(self.load):
            m.d.sync += shadow.eq(self.weight)
        with m.If(self.valid & self.first):
            m.d.sync += active.eq(shadow)
        m.d.comb += self.act_out.eq(delay(m, self.act, 1, "act", reset_less=True))
        m.d.sync += [self.valid_out.eq(self.valid), self.first_out.eq(self.valid & self.first)]
        m.d.comb += decoder.group.eq(self.act_out)
        for name in metadata_ports(decoder):
            m.d.comb += getattr(decoder, name).eq(getattr(active, name))
        m.d.comb += self.malformed.eq(decoder.malformed & self.first_out)
        if "bad_groups" in decoder.signature.members:
            m.d.comb += self.bad_groups.eq(Mux(self.first_out, decoder.bad_groups, 0))

        valid = delay(m, self.valid_out, 1, "valid", reset_less=False)
        m.d.comb += [mac.a.eq(delay(m, decoder.operands, 1, "operands", reset_less=True)),
                     mac.w.eq(delay(m, active.values, 1, "weights", reset_less=True)),
                     mac.valid.eq(valid), mac.last.eq(valid)]
        if self.side_shape is not None:
            m.d.comb += mac.w_side.eq(delay(m, active.side, 1, "side", reset_less=True))

        total, out_of_range = self.partial.add(m, self.psum, mac.result)
        m.d.sync += [self.psum_out.eq(total),
                     self.overflow.eq(mac.result_valid & out_of_range)]
        return m


class WeightStationaryArray(wiring.Component):
    """The generated top level for `array.dataflow = "weight_stationary"` (module docstring).
    `make_pe()` builds one StationaryPE; `pes[r][c]` are the PEs."""

    def __init__(self, rows, cols, make_pe, name="array"):
        self.rows, self.cols = rows, cols
        self.pes = [[make_pe() for _ in range(cols)] for _ in range(rows)]
        pe = self.pe = self.pes[0][0]
        self.n, self.m = pe.n, pe.m
        # Kinds whose partial sums are finished after the bottom row (rtl.ws_partials): act
        # beats say `final` (and what the kind's finish reads), results carry sums and values.
        partial = pe.partial
        self.finishes = partial.finishes
        self.hop = pe.psum_hop     # cycles a partial sum takes per PE row (activations skew alike)
        self.latency = rows * self.hop + cols + pe.psum_lag + partial.finish_latency
        self.result_depth = self.latency + 1    # beats the output FIFO holds
        group = pe.signature.members["act"].shape
        self.psum_layout = partial.layout
        psums = data.ArrayLayout(self.psum_layout, cols)
        column = tile_column_layout(pe, rows)
        if self.finishes and partial.tile_fields:
            column = data.StructLayout({**column.members, **partial.tile_fields})
        self.tile_layout = data.ArrayLayout(column, cols)
        act = {"data": data.ArrayLayout(group, rows), "psum": psums, "first": 1}
        result = psums
        if self.finishes:
            act |= {"final": 1, **partial.act_fields}
            value = partial.value_bits    # FP32, a posit code, an mpgemm output
            result = data.StructLayout({"psum": psums, "value": data.ArrayLayout(value, cols)})
        super().__init__({
            "act": In(stream.Signature(data.StructLayout(act))),
            "weight": In(stream.Signature(self.tile_layout)),
            "result": Out(stream.Signature(result)),
            "overflow": Out(1),
            "meta_error": Out(1),
            "bad_groups": Out(BAD_GROUP_COUNTER_WIDTH),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols, pes = self.rows, self.cols, self.pes
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        # Weight tiles: into every shadow register, once the tile before is in use everywhere.
        shadow_full = Signal()
        hop = self.hop
        settle = (rows - 1) * hop + cols - 1     # until the last PE has its tile in use
        settling = Signal(range(settle + 2))
        take_tile = self.weight.valid & self.weight.ready
        m.d.comb += self.weight.ready.eq(~shadow_full & (settling == 0))
        for r in range(rows):
            for c in range(cols):
                column = self.weight.payload[c]
                slot = pes[r][c].weight
                m.d.comb += [pes[r][c].load.eq(take_tile),
                             Value.cast(slot.values).eq(_slice(column.values, r, rows))]
                for name in metadata_ports(pes[r][c].decoder):
                    m.d.comb += Value.cast(getattr(slot, name)).eq(
                        _slice(getattr(column, name), r, rows))
                if self.pe.side_shape is not None:
                    m.d.comb += slot.side.eq(column.side)

        # Activation beats: admitted while the output FIFO has room for every outstanding one.
        m.submodules.out = out = fifo.SyncFIFO(width=len(self.result.payload.as_value()),
                                               depth=self.result_depth)
        outstanding = Signal(range(self.result_depth + 1))
        first = self.act.payload.first
        m.d.comb += self.act.ready.eq((outstanding < self.result_depth) & (~first | shadow_full))
        beat = self.act.valid & self.act.ready
        taken = self.result.valid & self.result.ready
        m.d.sync += outstanding.eq(outstanding + beat - taken)
        with m.If(beat & first):
            m.d.sync += [shadow_full.eq(0), settling.eq(settle)]
        with m.Elif(take_tile):
            m.d.sync += shadow_full.eq(1)
        with m.If(~(beat & first) & (settling != 0)):
            m.d.sync += settling.eq(settling - 1)

        # Skewed entry: row r after r*hop cycles, moving right; psum into each column's top PE.
        for r in range(rows):
            row = pes[r]
            skew = r * hop
            m.d.comb += [row[0].act.eq(delay(m, self.act.payload.data[r], skew, f"act_skew{r}_",
                                             reset_less=True)),
                         row[0].valid.eq(delay(m, beat, skew, f"valid_skew{r}_", reset_less=False)),
                         row[0].first.eq(delay(m, beat & first, skew, f"first_skew{r}_",
                                               reset_less=False))]
            for c in range(1, cols):
                m.d.comb += [row[c].act.eq(row[c - 1].act_out), row[c].valid.eq(row[c - 1].valid_out),
                             row[c].first.eq(row[c - 1].first_out)]
        lag = self.pe.psum_lag
        for c in range(cols):
            m.d.comb += pes[0][c].psum.eq(delay(m, self.act.payload.psum[c], c + lag,
                                                f"psum_in{c}_", reset_less=True))
            for r in range(1, rows):
                m.d.comb += pes[r][c].psum.eq(pes[r - 1][c].psum_out)

        # The bottom row's sums, re-aligned (column c leaves c cycles after column 0).
        sums = [delay(m, pes[-1][c].psum_out, cols - 1 - c, f"deskew{c}_", reset_less=True)
                for c in range(cols)]
        written = delay(m, beat, rows * hop + cols - 1 + lag, "result_valid", reset_less=False)
        if self.finishes:
            sums, written = self._finish(m, sums, written, beat, take_tile, lag)
        m.d.comb += [out.w_data.eq(Cat(*sums)), out.w_en.eq(written),
                     self.result.payload.eq(out.r_data), self.result.valid.eq(out.r_rdy),
                     out.r_en.eq(self.result.ready)]

        # Flags: sticky overflow; malformed groups counted as each PE takes a tile into use.
        row_overflow = Signal(rows)
        m.d.sync += [row_overflow[r].eq(Cat(pe.overflow for pe in pes[r]).any()) for r in range(rows)]
        with m.If(row_overflow.any()):
            m.d.sync += self.overflow.eq(1)
        several = "bad_groups" in self.pe.signature.members   # groups per beat (run-time)
        counts = []
        for r, row in enumerate(pes):
            counts.append([Signal.like(pe.bad_groups if several else pe.malformed,
                                       name=f"bad_{r}_{c}") for c, pe in enumerate(row)])
            m.d.sync += [count.eq(pe.bad_groups if several else pe.malformed)
                         for count, pe in zip(counts[-1], row)]
        count_bad_groups(m, counts, self.bad_groups, self.meta_error)
        return m


    def _finish(self, m, sums, written, beat, take_tile, lag):
        """Each column's deskewed sum through the kind's `finish`, with the act fields it reads
        (delayed as the beat's sums) and its tile fields (`w_*`: those of the tile the beat
        used, kept beside the PEs' shadow and active registers); a `final` beat's flags raise
        `overflow`. Returns the FIFO's word parts and write enable."""
        partial, payload, cols = self.pe.partial, self.act.payload, self.cols
        at = self.rows * self.hop + cols - 1 + lag   # a beat's transfer to its deskewed sums
        context = {name: delay(m, payload[name], at, f"ctx_{name}_", reset_less=True)
                   for name in partial.act_fields}
        columns = []
        for c in range(cols):
            fields = {}
            for name, shape in partial.tile_fields.items():   # kept as raw bits
                shadow = Signal(Shape.cast(shape).width, name=f"w_{name}{c}_shadow")
                active = Signal.like(shadow, name=f"w_{name}{c}_active")
                with m.If(take_tile):
                    m.d.sync += shadow.eq(self.weight.payload[c][name])
                with m.If(beat & payload.first):
                    m.d.sync += active.eq(shadow)
                used = Mux(payload.first, shadow, active)
                fields[f"w_{name}"] = delay(m, used, at, f"ctx_w_{name}{c}_", reset_less=True)
            columns.append(partial.finish(m, sums[c], {**context, **fields}, f"finish{c}"))
        later = partial.finish_latency
        final = delay(m, beat & payload.final, at + later, "final_written", reset_less=False)
        with m.If(final & Cat(flag for _, _, flag in columns).any()):
            m.d.sync += self.overflow.eq(1)
        bits = partial.value_bits
        return ([Cat(record for record, _, _ in columns),
                 Cat(Value.cast(value)[:bits] for _, value, _ in columns)],
                delay(m, written, later, "finished_valid", reset_less=False))


def _slice(field, index, count):
    """Part `index` of `count` equal parts of a field's bits."""
    bits = Value.cast(field)
    width = len(bits) // count
    return bits[index * width:(index + 1) * width]
