"""R x C output-stationary systolic array computing C = A x W with W in N:M compressed form.

Streams (amaranth.lib.stream, valid/ready):
  act     in : one group of M activations per array row (`data[r][j]`), plus `last` marking the
               final K-group of the current output tile.
  weight  in : per array column, N weight values (+ N indices unless dense) of the same K-group.
  result  out: the finished R x C output tile (`[r][c]`, signed acc_width).
One beat of each input stream is joined per cycle; every multiplier does one MAC per beat, so the
array reduces R*C*M dense-equivalent MACs per cycle. Tiles are pipelined back to back: the next
tile's beats are accepted while the previous tile drains; only a tile's `last` beat waits until
the previous result has been taken.

Activations enter row r after r cycles of skew and move right one PE per cycle; weights (with
the valid/last control) enter column c after c cycles and move down. `overflow` and `meta_error`
are sticky until reset; `bad_groups` counts malformed index groups (column x K-group).
"""
from amaranth import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .decoder import indices_malformed
from .pipeline import delay
from .pe import SparsePE, weight_layout

BAD_GROUP_COUNTER_WIDTH = 32


def act_layout(rows, m, act_shape):
    return data.StructLayout({"data": data.ArrayLayout(data.ArrayLayout(act_shape, m), rows),
                              "last": 1})


def weights_layout(cols, n, m, weight_shape):
    return data.ArrayLayout(weight_layout(n, m, weight_shape), cols)


def result_layout(rows, cols, result_shape):
    return data.ArrayLayout(data.ArrayLayout(result_shape, cols), rows)


class SparseArray(wiring.Component):
    """The generated top level; `make_mac()` builds one PE kind's MAC unit per PE.
    Latency from the `last` beat's transfer to `result.valid`: `latency` cycles (skew R-1 + C-1,
    plus the PE pipeline, plus the output register)."""

    def __init__(self, rows, cols, n, m, make_mac):
        self.rows, self.cols, self.n, self.m = rows, cols, n, m
        self.pes = [[SparsePE(n, m, make_mac()) for _ in range(cols)] for _ in range(rows)]
        pe = self.pes[0][0]
        self.latency = (rows - 1) + (cols - 1) + pe.latency + 1
        super().__init__({
            "act": In(stream.Signature(act_layout(rows, m, pe.act_shape))),
            "weight": In(stream.Signature(weights_layout(cols, n, m, pe.weight_shape))),
            "result": Out(stream.Signature(result_layout(rows, cols, pe.result_shape))),
            "overflow": Out(1),
            "meta_error": Out(1),
            "bad_groups": Out(BAD_GROUP_COUNTER_WIDTH),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols

        # Join the two input streams; a `last` beat waits for a free output bank.
        tile_pending = Signal()
        may_take = ~self.act.payload.last | ~tile_pending
        m.d.comb += [self.act.ready.eq(self.weight.valid & may_take),
                     self.weight.ready.eq(self.act.valid & may_take)]
        beat = Signal()
        m.d.comb += beat.eq(self.act.valid & self.weight.valid & may_take)
        with m.If(beat & self.act.payload.last):
            m.d.sync += tile_pending.eq(1)

        self._check_metadata(m, beat)

        pes = self.pes
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        # Skewed entry at the edges, then neighbour-to-neighbour forwarding.
        for r in range(rows):
            m.d.comb += pes[r][0].act.eq(delay(m, self.act.payload.data[r], r, f"act_skew{r}_", reset_less=True))
            for c in range(1, cols):
                m.d.comb += pes[r][c].act.eq(pes[r][c - 1].act_out)
        for c in range(cols):
            weight = delay(m, self.weight.payload[c], c, f"weight_skew{c}_", reset_less=True)
            valid = delay(m, beat, c, f"valid_skew{c}_", reset_less=False)
            last = delay(m, self.act.payload.last, c, f"last_skew{c}_", reset_less=False)
            m.d.comb += [pes[0][c].weight.eq(weight), pes[0][c].valid.eq(valid), pes[0][c].last.eq(last)]
            for r in range(1, rows):
                above = pes[r - 1][c]
                m.d.comb += [pes[r][c].weight.eq(above.weight_out), pes[r][c].valid.eq(above.valid_out),
                             pes[r][c].last.eq(above.last_out)]

        # Output bank: complete when the bottom-right PE publishes; freed when taken.
        with m.If(pes[rows - 1][cols - 1].result_valid):
            m.d.sync += self.result.valid.eq(1)
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += [self.result.valid.eq(0), tile_pending.eq(0)]
        for r in range(rows):
            for c in range(cols):
                m.d.comb += self.result.payload[r][c].eq(pes[r][c].result)

        # Sticky overflow: one registered OR per row, then across rows.
        row_overflow = Signal(rows)
        m.d.sync += [row_overflow[r].eq(Cat(pe.overflow for pe in pes[r]).any()) for r in range(rows)]
        with m.If(row_overflow.any()):
            m.d.sync += self.overflow.eq(1)
        return m

    def _check_metadata(self, m, beat):
        """Flag and count malformed index groups of every accepted weight beat."""
        if self.n == self.m:
            return
        bad = Signal(self.cols)
        m.d.sync += bad.eq(Cat(indices_malformed(self.weight.payload[c].indices, self.m)
                               for c in range(self.cols)) & beat.replicate(self.cols))
        with m.If(bad.any()):
            m.d.sync += [self.meta_error.eq(1),
                         self.bad_groups.eq(self.bad_groups + sum(bad[c] for c in range(self.cols)))]
