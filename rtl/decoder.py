"""N:M decoders: route the N kept activations of one group of M to N multipliers.

Two metadata encodings (SPEC §1): `NMDecoder` reads N indices, `BitmapDecoder` an M-bit bitmap.
`RuntimeNMDecoder` runs every pattern of a run-time design (dual mode), chosen per beat by a
pattern id next to the indices. `GroupedDecoder` puts several fixed-pattern decoders side by
side for a beat of several consecutive groups (the dot-product dataflow's PEs).
All are combinational (latency 0): callers register their outputs. A decoder's ports: `group`
(the M activations of one beat), its metadata inputs (`metadata_ports`: `indices` or `bitmap`;
none when dense), `operands` (N) and `malformed`; the PE shell builds the weight stream's
metadata fields from `metadata_ports`, so a new decoder brings its own encoding. A decoder whose
beat holds several groups also has `bad_groups` (how many of them are malformed).
"""
from amaranth import Cat, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..golden.nm import pattern_id_bits, pattern_name, runtime_patterns


def index_bits(m):
    """Bits of one index into a group of M (0 for a group of one)."""
    return ceil_log2(m)


def index_layout(n, m):
    """Layout of one group's index metadata: N indices of ceil(log2 M) bits."""
    return data.ArrayLayout(unsigned(index_bits(m)), n)


def indices_malformed(indices, m) -> Value:
    """1 when a group's indices are not strictly increasing or one is >= M (SPEC §1)."""
    bad = [idx >= m for idx in indices] if m & (m - 1) else []
    bad += [indices[i] >= indices[i + 1] for i in range(len(indices) - 1)]
    return Value.cast(0) if not bad else _any(bad)


def bitmap_prefix_counts(bitmap, module=None):
    """Prefix popcounts of an M-bit bitmap: M+1 values, entry i = set bits among bitmap[0:i].

    Entry i is ``bits_for(i)`` bits wide (exact, no overflow); entry M is the popcount. With a
    ``module``, entries 2..M are named signals (``popcount_below<i>``) driven in its comb domain, so
    the adder chain appears once in the netlist however often the entries are used.
    """
    bitmap = Value.cast(bitmap)
    counts = [Const(0, 1)]
    for i, bit in enumerate(bitmap):
        count = bit if i == 0 else (counts[-1] + bit)[:(i + 1).bit_length()]
        if module is not None and i > 0:
            sig = Signal(len(count), name=f"popcount_below{i + 1}")
            module.d.comb += sig.eq(count)
            count = sig
        counts.append(count)
    return counts


def bitmap_malformed(bitmap, n) -> Value:
    """1 when a group's bitmap (M bits, bit i = element i kept) does not have exactly N bits set (SPEC §1)."""
    return bitmap_prefix_counts(bitmap)[-1] != n


def _decoder_ports(n, m, elem_shape, metadata):
    """The ports every decoder has (`group` of M elements in, N `operands` and `malformed` out)
    plus, unless dense, its metadata port {name: shape}."""
    ports = {"group": In(data.ArrayLayout(elem_shape, m)),
             "operands": Out(data.ArrayLayout(elem_shape, n)),
             "malformed": Out(1)}
    if n != m:
        ports.update({name: In(shape) for name, shape in metadata.items()})
    return ports


def metadata_ports(decoder):
    """{name: shape} of a decoder's metadata inputs (every input but `group`): what the weight
    stream must carry per column and beat."""
    return {name: member.shape for name, member in decoder.signature.members.items()
            if member.flow == In and name != "group"}


def _any(bits):
    out = bits[0]
    for bit in bits[1:]:
        out = out | bit
    return out


class NMDecoder(wiring.Component):
    """Selects, from one group of M activations, the N addressed by the weights' indices.

    Elements are of any shape (an integer, or a PE kind's number-format code).
    Dense (N == M) needs no metadata: operand i is activation i. `malformed` rises when the
    group's indices break SPEC §1 (not strictly increasing, or >= M).
    """

    def __init__(self, n, m, elem_shape):
        self.n, self.m = n, m
        self.dense = n == m
        super().__init__(_decoder_ports(n, m, elem_shape, {"indices": index_layout(n, m)}))

    def elaborate(self, platform):
        m = Module()
        if self.dense:
            m.d.comb += self.operands.eq(self.group)
            return m
        for i in range(self.n):
            m.d.comb += self.operands[i].eq(self.group[self.indices[i]])
        m.d.comb += self.malformed.eq(indices_malformed(self.indices, self.m))
        return m


class BitmapDecoder(wiring.Component):
    """Selects, from one group of M activations, the N marked in the weights' bitmap (SPEC §1).

    `bitmap` bit i set means element i is kept; operand j is the element of the j-th set bit in
    index order. `malformed` rises when the popcount is not N; the operands are then unspecified
    (deterministic, but not part of the contract). Elements are of any shape, as for `NMDecoder`;
    dense (N == M) needs no metadata and has no `bitmap` port: operand i is activation i.

    Selection is by prefix popcount: element i feeds operand j when bit i is set and exactly j bits
    below it are set. For a well-formed bitmap the j-th set bit lies in positions j..M-N+j, so each
    operand is an AND-OR mux of only M-N+1 candidates (N*(M-N+1) in all, not N*M).
    """

    def __init__(self, n, m, elem_shape):
        self.n, self.m = n, m
        self.dense = n == m
        super().__init__(_decoder_ports(n, m, elem_shape, {"bitmap": unsigned(m)}))

    def elaborate(self, platform):
        m = Module()
        if self.dense:
            m.d.comb += self.operands.eq(self.group)
            return m
        group = Value.cast(self.group)
        width = len(group) // self.m
        elems = [group[i * width:(i + 1) * width] for i in range(self.m)]
        counts = bitmap_prefix_counts(self.bitmap, m)
        operands = []
        for j in range(self.n):
            picks = [Mux(self.bitmap[i] & (counts[i] == j), elems[i], 0)
                     for i in range(j, self.m - self.n + j + 1)]
            operands.append(_any(picks))
        m.d.comb += [
            Value.cast(self.operands).eq(Cat(*operands)),
            self.malformed.eq(counts[-1] != self.n),  # = bitmap_malformed(self.bitmap, self.n)
        ]
        return m


class RuntimeNMDecoder(wiring.Component):
    """Run-time N:M patterns (dual mode): one decoder for every pattern of
    `golden.nm.runtime_patterns(N, Mmax)`, chosen per beat by the weights' `pattern` id.

    A beat of pattern N':M' carries N/N' consecutive groups of M'; multiplier (operand) i is lane
    i % N' of group i // N'. `indices` holds N group-relative indices of ceil(log2 Mmax) bits and
    `group` is a window of N lane blocks of Mmax activations (golden.nm.act_windows): block i
    holds the M' elements of lane i's group, so operand i = block i [indices[i]] in every
    pattern. Routing is therefore a per-multiplier Mmax:1 mux (`candidates`), the cost of a
    fixed N:Mmax decoder; the pattern-dependent placement of the activations happens once per row
    and beat where the window is filled (the stream's producer), not in every PE. Dense (id 0)
    is N:N: block i holds the N elements, indices 0..N-1.

    `bad_groups` counts the beat's malformed groups (indices not strictly increasing, or one
    >= M'); an unknown pattern id counts as one. `malformed` = `bad_groups` != 0; the operands
    of a malformed beat are unspecified (deterministic).
    """

    def __init__(self, n, mmax, elem_shape):
        self.n, self.m = n, mmax
        self.dense = False
        self.patterns = runtime_patterns(n, mmax)
        self.pattern_names = [pattern_name(p) for p in self.patterns]
        self.window = n * mmax
        self.index_bits = max(1, index_bits(mmax))
        self.elem_shape = elem_shape
        super().__init__({
            "group": In(data.ArrayLayout(elem_shape, self.window)),
            "pattern": In(unsigned(pattern_id_bits(n, mmax))),
            "indices": In(data.ArrayLayout(unsigned(self.index_bits), n)),
            "operands": Out(data.ArrayLayout(elem_shape, n)),
            "malformed": Out(1),
            "bad_groups": Out(range(n + 1)),
        })

    def candidates(self, i):
        """The window positions operand i reads, in index order: its lane block."""
        return list(range(i * self.m, (i + 1) * self.m))

    def elaborate(self, platform):
        m = Module()
        n = self.n
        group = Value.cast(self.group)
        width = len(group) // self.window
        elems = [group[p * width:(p + 1) * width] for p in range(self.window)]
        indices = [self.indices[i] for i in range(n)]
        for i in range(n):
            block = Signal(data.ArrayLayout(self.elem_shape, len(self.candidates(i))),
                           name=f"block{i}")
            m.d.comb += [Value.cast(block).eq(Cat(elems[p] for p in self.candidates(i))),
                         self.operands[i].eq(block[indices[i]])]

        # Malformed groups, per pattern; the comparisons of neighbouring lanes are shared.
        not_increasing = [indices[i] >= indices[i + 1] for i in range(n - 1)]
        with m.Switch(self.pattern):
            for pid, (np_, mp) in enumerate(self.patterns):
                bad = []
                for g in range(n // np_):
                    lanes = range(g * np_, (g + 1) * np_)
                    terms = [not_increasing[l] for l in lanes[:-1]]
                    if mp < 1 << self.index_bits:
                        terms += [indices[l] >= mp for l in lanes]
                    if terms:
                        bad.append(_any(terms))
                with m.Case(pid):
                    m.d.comb += self.bad_groups.eq(sum(bad) if bad else 0)
            with m.Default():
                m.d.comb += self.bad_groups.eq(1)
        m.d.comb += self.malformed.eq(self.bad_groups != 0)
        return m


def grouped_metadata(decoder, groups):
    """{name: shape} of `groups` beats' worth of `decoder`'s metadata side by side (group 0
    first): N*groups indices, or a groups*M-bit bitmap."""
    return {name: (data.ArrayLayout(shape.elem_shape, shape.length * groups)
                   if isinstance(shape, data.ArrayLayout)
                   else unsigned(Shape.cast(shape).width * groups))
            for name, shape in metadata_ports(decoder).items()}


class GroupedDecoder(wiring.Component):
    """`groups` decoders of one fixed pattern (`make_decoder()`: an NMDecoder or BitmapDecoder)
    side by side: a beat of `groups` consecutive groups of M activations. Each metadata port is
    the decoders' ports concatenated (group 0 first: N*groups group-relative indices, or a
    groups*M-bit bitmap whose bit g*M + i keeps element i of group g); operand g*N + j is
    decoder g's operand j. `bad_groups` counts the beat's malformed groups, `malformed` is
    set when there is one. Combinational, like the decoders it holds."""

    def __init__(self, groups, make_decoder):
        self.decoders = [make_decoder() for _ in range(groups)]
        inner = self.decoders[0]
        self.groups, self.dense = groups, inner.dense
        self.n, self.m = inner.n * groups, inner.m * groups
        self.group_n, self.group_m = inner.n, inner.m
        ports = {"group": In(data.ArrayLayout(inner.group.shape().elem_shape, self.m)),
                 "operands": Out(data.ArrayLayout(inner.operands.shape().elem_shape, self.n)),
                 "malformed": Out(1), "bad_groups": Out(range(groups + 1))}
        ports |= {name: In(shape) for name, shape in grouped_metadata(inner, groups).items()}
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        elems = Value.cast(self.group)
        width = len(elems) // self.m
        bad = []
        for g, decoder in enumerate(self.decoders):
            m.submodules[f"group{g}"] = decoder
            span = self.group_m * width
            m.d.comb += Value.cast(decoder.group).eq(elems[g * span:(g + 1) * span])
            for name in metadata_ports(decoder):
                field = Value.cast(getattr(decoder, name))
                m.d.comb += field.eq(Value.cast(getattr(self, name))[g * len(field):(g + 1) * len(field)])
            operands = Value.cast(decoder.operands)
            out = Value.cast(self.operands)
            m.d.comb += out[g * len(operands):(g + 1) * len(operands)].eq(operands)
            bad.append(decoder.malformed)
        m.d.comb += [self.bad_groups.eq(sum(bad)), self.malformed.eq(self.bad_groups != 0)]
        return m
