"""Golden model of the accelerator (rtl.isa documents every command): memory images, the
bit-exact executor of a command list, and the hazard check of a program.

Memory images (what LOAD carries, built by the host or the model compiler):
  act_image(a)         ACT words of an (m x k) activation matrix: ceil(m/R) row panels (rows past
                       m are zero), each k/G words (one per K-group of G = shape.k_group: M, or
                       N*Mmax on a run-time design); element (r, j) of a word is lane r*G + j,
                       act_width bits two's complement, lane 0 at the LSB.
  weight_image(v, i)   WEIGHT words of a compressed (k x n) weight matrix (golden.nm.compress_nm
                       form: values and indices (k/M*N, n)): ceil(n/C) column panels (columns past
                       n have zero values and indices 0..N-1), each k/M words; column c of a word
                       at bit c*column_bits: N values (weight_width bits), then the metadata
                       (N indices of ceil(log2 M) bits, or the M-bit bitmap; none when dense).
                       Run-time design: one word per beat of the GEMM's pattern (k/S words per
                       column panel, golden.nm.compress_runtime form), N values + N indices.
  param_image(b, m, s) PARAM words (rtl.isa.Requant): per output column bias, mult, shift.
  stream_words(words)  the data-in stream words of a LOAD: the words' bits back to back, LSB
                       first, cut into stream_width-bit words (the last one zero-padded).
The data-out stream of a STORE: elements of act_width (or acc_width when `wide`) bits,
stream_width // bits of them per stream word, element 0 at the LSB (`unpack_store`).

Output stage (int kinds), exactly as rtl.isa: x = acc + bias; y = clamp(floor((x * mult +
2^(shift-1)) / 2^shift)) to act_width bits (rounding half up; shift 0: no rounding term), or with
`raw` clamp(x) to acc_width bits; then ReLU if asked (`requantize`).

`Executor(shape).run(commands, data_in)` runs a program in order (the result of any legal
overlap is the same; `hazards` finds the places where it would not be).
"""
from dataclasses import dataclass, field

import numpy as np
from amaranth import Shape

from ..rtl.isa import (Buffer, Error, Opcode, Requant, UNIT_OF, Unit, check, decode, encode,
                       PARAM_BIAS_BITS, PARAM_MULT_BITS, PARAM_SHIFT_BITS)
from .fp_mac import fp_mac
from .gemm import _accumulate
from .mx import mx_mac
from .ints import int_range
from .nm import act_windows, runtime_bad_groups, window_positions

_PARAM_FIELDS = {name: (f.offset, Shape.cast(f.shape).width, Shape.cast(f.shape).signed)
                 for name, f in Requant.as_shape()}


def _ceil(a, b):
    return -(-a // b)


# Bit-level packing: words (ints) <-> bit matrices <-> fixed-width lanes.

def _words_to_lanes(words, lanes, width, signed=True):
    """(len(words), lanes) int64 array of `width`-bit lanes (lane 0 at the LSB) of each word;
    lanes wider than 62 bits (a dot-product design's WEIGHT columns) come as Python ints
    (object array), unsigned."""
    if width > 62:
        mask = (1 << width) - 1
        return np.array([[(int(w) >> (i * width)) & mask for i in range(lanes)] for w in words],
                        dtype=object).reshape(len(words), lanes)
    nbytes = _ceil(lanes * width, 8) or 1
    mask = (1 << (nbytes * 8)) - 1
    raw = b"".join((int(w) & mask).to_bytes(nbytes, "little") for w in words)
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")
    bits = bits.reshape(len(words), nbytes * 8)[:, :lanes * width].reshape(len(words), lanes, width)
    values = (bits.astype(np.int64) << np.arange(width, dtype=np.int64)).sum(axis=-1)
    if signed and width:
        values = np.where(values >= 1 << (width - 1), values - (1 << width), values)
    return values


def _lanes_to_words(values, width):
    """Words (ints) from a (count, lanes) array of `width`-bit lanes (two's complement)."""
    values = np.asarray(values, dtype=np.int64)
    count, lanes = values.shape
    unsigned = values & ((1 << width) - 1)
    bits = ((unsigned[..., None] >> np.arange(width, dtype=np.int64)) & 1).astype(np.uint8)
    bits = bits.reshape(count, lanes * width)
    pad = (-bits.shape[1]) % 8
    packed = np.packbits(np.pad(bits, ((0, 0), (0, pad))), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def _check_fits(values, width, name, signed=True):
    lo, hi = int_range(width) if signed else (0, (1 << width) - 1)
    values = np.asarray(values)
    if values.size and (values.min() < lo or values.max() > hi):
        kind = "signed" if signed else "unsigned (format codes)"
        raise ValueError(f"{name}: values must be {kind} {width}-bit integers ({lo}..{hi})")


def _signed(shape):
    """Elements are two's complement integers (kind "int"), else unsigned format codes."""
    return shape.kind == "int"


# Memory images.

def act_image(a, shape, scales=None):
    """ACT words of activation matrix `a` (m x k); k must be a multiple of G = shape.k_group.
    Kind "mx": `scales` (m x k/block_size) E8M0 codes, each word carries its rows' scales."""
    a = np.asarray(a, dtype=np.int64)
    m_rows, k = a.shape
    g_elems = shape.k_group
    if k % g_elems:
        raise ValueError(f"act_image: k = {k} is not a multiple of the K-group {g_elems}")
    _check_fits(a, shape.act_width, "act_image", _signed(shape))
    panels = _ceil(m_rows, shape.rows)
    padded = np.zeros((panels * shape.rows, k), dtype=np.int64)
    padded[:m_rows] = a
    groups = k // g_elems
    lanes = padded.reshape(panels, shape.rows, groups, g_elems).transpose(0, 2, 1, 3)
    words = _lanes_to_words(lanes.reshape(panels * groups, shape.rows * g_elems), shape.act_width)
    if not shape.side_bits:
        return words
    sides = np.zeros((panels * shape.rows, groups), dtype=np.int64)   # per row and word
    sides[:m_rows] = np.repeat(_scales(scales, (m_rows, k // shape.block_size)),
                               shape.block_size // g_elems, axis=1)
    side_words = _lanes_to_words(sides.reshape(panels, shape.rows, groups).transpose(0, 2, 1)
                                 .reshape(panels * groups, shape.rows), shape.side_bits)
    return [w | (s << shape.act_data_bits) for w, s in zip(words, side_words)]


def _scales(scales, want):
    """E8M0 scale codes of shape `want` (kind "mx")."""
    if scales is None or np.shape(scales) != want:
        raise ValueError(f"mx images need E8M0 scales of shape {want}, got "
                         f"{None if scales is None else np.shape(scales)}")
    scales = np.asarray(scales, dtype=np.int64)
    _check_fits(scales, 8, "mx scales", signed=False)
    return scales


def act_sides(words, shape):
    """Per ACT word, its rows' side values (mx scales): (len(words), R) ints."""
    return _words_to_lanes([int(w) >> shape.act_data_bits for w in words], shape.rows,
                           shape.side_bits, signed=False)


def act_from_image(words, m_rows, k, shape):
    """Inverse of act_image: the (m_rows x k) matrix held by ACT words."""
    g_elems = shape.k_group
    groups = k // g_elems
    panels = _ceil(m_rows, shape.rows)
    lanes = _words_to_lanes(words, shape.rows * g_elems, shape.act_width, _signed(shape))
    a = lanes.reshape(panels, groups, shape.rows, g_elems).transpose(0, 2, 1, 3)
    return a.reshape(panels * shape.rows, k)[:m_rows]


def _metadata_lanes(indices, shape):
    """(beats, N*beat_groups or 1 lanes, cols) metadata of compressed `indices` (G*N, cols),
    with the lane width: indices as they are (group-relative), or the bitmap word per beat (group
    b's bits at b*M)."""
    beats = indices.shape[0] // shape.beat_n
    grouped = indices.reshape(beats, shape.beat_n, -1)
    if shape.encoding == "bitmap":
        bitmap = np.zeros((beats, 1, grouped.shape[2]), dtype=np.int64)
        for j in range(shape.beat_n):
            bitmap[:, 0] |= np.int64(1) << (grouped[:, j] + j // shape.n * shape.m)
        return bitmap, shape.beat_m
    return grouped, (shape.m - 1).bit_length()


def weight_image(values, indices, shape, pattern=0, scales=None):
    """WEIGHT words of compressed weights: values, indices (k/M*N, n) (indices ignored when
    dense); on a run-time design the golden.nm.compress_runtime form of pattern id `pattern`
    ((k/M'*N', n): N consecutive rows per beat), indices group-relative. Padding columns get
    zero values and the well-formed indices 0..N'-1 of every group (and scale 0 on mx). Kind
    "mx": `scales` (k/block_size x n) E8M0 codes, each column's after its metadata."""
    values = np.asarray(values, dtype=np.int64)
    rows, n_cols = values.shape
    if rows % shape.beat_n:
        raise ValueError(f"weight_image: {rows} value rows is not a multiple of N = {shape.beat_n}")
    _check_fits(values, shape.weight_width, "weight_image", _signed(shape))
    groups, panels = rows // shape.beat_n, _ceil(n_cols, shape.cols)   # one word per beat
    width = panels * shape.cols
    v = np.zeros((rows, width), dtype=np.int64)
    v[:, :n_cols] = values
    per_group = shape.patterns[pattern][0]
    idx = np.tile(np.arange(shape.beat_n, dtype=np.int64)[:, None] % per_group, (groups, width))
    if not shape.dense:
        idx[:, :n_cols] = np.asarray(indices, dtype=np.int64)
    sides = np.zeros((groups, width), dtype=np.int64)
    if shape.side_bits:
        k = groups * shape.span()
        sides[:, :n_cols] = np.repeat(_scales(scales, (k // shape.block_size, n_cols)),
                                      shape.block_size // shape.span(), axis=0)
    side_shift = shape.column_bits - shape.side_bits
    words = []
    for p in range(panels):
        cols = slice(p * shape.cols, (p + 1) * shape.cols)
        col_words = _column_words(v[:, cols], idx[:, cols], shape)  # (groups, C)
        for g in range(groups):
            word = 0
            for c in range(shape.cols):
                column = col_words[g][c] | int(sides[g, p * shape.cols + c]) << side_shift
                word |= column << (c * shape.column_bits)
            words.append(word)
    return words


def _column_words(values, indices, shape):
    """Per beat and column, the column's bits (values, then metadata) as ints."""
    groups = values.shape[0] // shape.beat_n
    vg = values.reshape(groups, shape.beat_n, -1).transpose(0, 2, 1)  # (G, C, N)
    parts = [_lanes_to_words(vg.reshape(-1, shape.beat_n), shape.weight_width)]
    shifts = [0]
    if not shape.dense:
        meta, bits = _metadata_lanes(indices, shape)
        mg = meta.transpose(0, 2, 1)  # (G, C, lanes)
        parts.append(_lanes_to_words(mg.reshape(-1, mg.shape[2]), bits))
        shifts.append(shape.beat_n * shape.weight_width)
    flat = [sum(part[i] << shift for part, shift in zip(parts, shifts))
            for i in range(vg.shape[0] * vg.shape[1])]
    return [flat[g * vg.shape[1]:(g + 1) * vg.shape[1]] for g in range(groups)]


def weights_from_image(words, k, n_cols, shape, pattern=0):
    """Inverse of weight_image for k and the padded width ceil(n/C)*C: (values, positions)
    (k/S*N, padded cols) each (S = shape.span(pattern)); positions are the decoded metadata
    (bitmap: the set bits in order, padded with 0 when fewer than N, the first N when more;
    dense: 0..N-1; run-time: the stored group-relative indices). With several K-groups per beat
    (beat_groups), (values, positions) have N*beat_groups rows per beat and positions count from
    the beat's first element; `meta` keeps the stored metadata (indices group-relative)."""
    groups = k // shape.span(pattern)
    panels = _ceil(n_cols, shape.cols)
    cols = panels * shape.cols
    column_lanes = _words_to_lanes(words, shape.cols, shape.column_bits, signed=False)
    column_lanes = column_lanes.reshape(panels, groups, shape.cols).transpose(1, 0, 2)
    column_lanes = column_lanes.reshape(groups, cols)  # one column's bits per (group, col)
    flat = [int(x) for x in column_lanes.reshape(-1)]
    lanes, n, m = shape.beat_n, shape.n, shape.m
    vals = _words_to_lanes(flat, lanes, shape.weight_width, _signed(shape))
    vals = vals.reshape(groups, cols, lanes)
    first = np.arange(lanes) // n * m   # each lane's group's first element in the beat
    if shape.dense:
        pos = np.broadcast_to(np.arange(lanes), vals.shape).copy()
        meta = None
    else:
        shifted = [x >> (lanes * shape.weight_width) for x in flat]
        if shape.encoding == "bitmap":
            meta = np.array(shifted, dtype=np.int64).reshape(groups, cols)
            pos = np.zeros_like(vals)
            for g in range(groups):
                for c in range(cols):
                    for b in range(shape.beat_groups):
                        kept = [i for i in range(m) if meta[g, c] >> (b * m + i) & 1][:n]
                        pos[g, c, b * n:b * n + len(kept)] = kept
            pos += first
        else:
            bits = (m - 1).bit_length()
            meta = _words_to_lanes(shifted, lanes, bits, signed=False).reshape(groups, cols, lanes)
            pos = meta if shape.runtime else meta + first   # run-time: group-relative
    return vals.transpose(0, 2, 1).reshape(groups * lanes, cols), \
        pos.transpose(0, 2, 1).reshape(groups * lanes, cols), meta


def weight_sides(words, k, n_cols, shape):
    """Per beat and padded column, the WEIGHT words' side values (mx scales): (k/span, cols)."""
    groups, panels = k // shape.span(), _ceil(n_cols, shape.cols)
    column_lanes = _words_to_lanes(words, shape.cols, shape.column_bits, signed=False)
    sides = (column_lanes >> (shape.column_bits - shape.side_bits)).astype(np.int64)
    return sides.reshape(panels, groups, shape.cols).transpose(1, 0, 2).reshape(groups, -1)


def param_image(bias, mult, shift):
    """PARAM words (rtl.isa.Requant) of per-column bias, mult and shift (equal lengths)."""
    bias, mult, shift = (np.asarray(x, dtype=np.int64).reshape(-1) for x in (bias, mult, shift))
    if not len(bias) == len(mult) == len(shift):
        raise ValueError("param_image: bias, mult and shift must have one entry per column")
    _check_fits(bias, PARAM_BIAS_BITS, "param_image bias")
    for name, x, bits in (("mult", mult, PARAM_MULT_BITS), ("shift", shift, PARAM_SHIFT_BITS)):
        if x.size and (x.min() < 0 or x.max() >= 1 << bits):
            raise ValueError(f"param_image {name}: values must be unsigned {bits}-bit integers")
    words = []
    for b, mu, sh in zip(bias, mult, shift):
        word = 0
        for name, value in (("bias", int(b)), ("mult", int(mu)), ("shift", int(sh))):
            offset, width, _ = _PARAM_FIELDS[name]
            word |= (value & ((1 << width) - 1)) << offset
        words.append(word)
    return words


def params_from_image(words):
    """(bias, mult, shift) int64 arrays of PARAM words."""
    out = []
    for name in ("bias", "mult", "shift"):
        offset, width, signed = _PARAM_FIELDS[name]
        x = np.array([(int(w) >> offset) & ((1 << width) - 1) for w in words], dtype=np.int64)
        if signed:
            x = np.where(x >= 1 << (width - 1), x - (1 << width), x)
        out.append(x)
    return tuple(out)


def stream_words(words, word_bits, stream_width):
    """The data-in stream words that LOAD `words` of `word_bits` bits each."""
    total = 0
    for i, word in enumerate(words):
        total |= (int(word) & ((1 << word_bits) - 1)) << (i * word_bits)
    count = _ceil(len(words) * word_bits, stream_width)
    mask = (1 << stream_width) - 1
    return [(total >> (i * stream_width)) & mask for i in range(count)]


def words_from_stream(stream, count, word_bits, stream_width):
    """Inverse of stream_words: `count` words from stream words."""
    total = 0
    for i, s in enumerate(stream):
        total |= int(s) << (i * stream_width)
    mask = (1 << word_bits) - 1
    return [(total >> (i * word_bits)) & mask for i in range(count)]


def unpack_store(stream, count, element_bits, stream_width, signed=True):
    """The `count` elements a STORE sent as `stream` words (int64 array)."""
    per_word = stream_width // element_bits
    lanes = _words_to_lanes(stream, per_word, element_bits, signed)
    return lanes.reshape(-1)[:count]


def requantize(acc, bias, mult, shift, act_width, acc_width, relu=False, raw=False):
    """The output stage (rtl.isa GEMM): per element acc, per column bias/mult/shift."""
    x = np.asarray(acc, dtype=np.int64) + np.asarray(bias, dtype=np.int64)
    if raw:
        lo, hi = int_range(acc_width)
        y = np.clip(x, lo, hi)
    else:
        shift = np.asarray(shift, dtype=np.int64)
        p = x * np.asarray(mult, dtype=np.int64)
        rounding = np.where(shift > 0, np.int64(1) << np.maximum(shift - 1, 0), 0)
        y = (p + rounding) >> shift
        lo, hi = int_range(act_width)
        y = np.clip(y, lo, hi)
    return np.maximum(y, 0) if relu else y


# The executor.

@dataclass
class Status:
    """The accelerator's status registers after a program (sticky flags and counters)."""
    cmd_error: bool = False
    error_code: Error = Error.NONE
    overflow: bool = False
    meta_error: bool = False
    bad_groups: int = 0
    refused: list = field(default_factory=list)   # (command index, Error)
    array_beats: int = 0


class Executor:
    """Runs command lists on numpy buffers exactly as the RTL does (rtl.isa semantics)."""

    def __init__(self, shape):
        self.shape = shape
        self.buffers = {b: [0] * shape.depth(b) for b in Buffer}
        self.status = Status()

    def run(self, commands, data_in=()):
        """Execute `commands` (dicts from rtl.isa or command words) reading LOAD data from the
        `data_in` stream words; returns the list of STORE packets (lists of stream words)."""
        data = iter(data_in)
        packets = []
        for number, command in enumerate(commands):
            fields = decode(encode(command))
            error = check(fields, self.shape)
            if error != Error.NONE:
                self.status.cmd_error = True
                self.status.error_code = error
                self.status.refused.append((number, error))
                continue
            opcode = fields["opcode"]
            if opcode == Opcode.LOAD:
                self._load(fields["load"], data)
            elif opcode == Opcode.GEMM:
                self._gemm(fields["gemm"])
            elif opcode == Opcode.STORE:
                packets.append(self._store(fields["store"]))
        return packets

    def _load(self, f, data):
        buffer = Buffer(f["buffer"])
        bits = self.shape.word_bits(buffer)
        count = self.shape.stream_words(buffer, f["count"])
        stream = [next(data) for _ in range(count)]
        words = words_from_stream(stream, f["count"], bits, self.shape.stream_width)
        self.buffers[buffer][f["addr"]:f["addr"] + f["count"]] = words

    def _store(self, f):
        s = self.shape
        elem_bits = s.store_element_bits(f["wide"])
        values = np.array(self.buffers[Buffer.OUT][f["addr"]:f["addr"] + f["count"]],
                          dtype=np.int64)
        per_word = s.stream_width // elem_bits
        padded = np.zeros(_ceil(len(values), per_word) * per_word, dtype=np.int64)
        padded[:len(values)] = values
        return _lanes_to_words(padded.reshape(-1, per_word), elem_bits)

    def gemm_accumulators(self, f):
        """The padded (ceil(m/R)*R x ceil(n/C)*C) accumulator matrix of a GEMM command's
        operands as they are in the buffers; updates the overflow and metadata flags. Each
        beat's exact sum over the N multipliers is accumulated in beat order."""
        s = self.shape
        pid = f.get("pattern", 0)
        beats = f["k"] // s.span(pid)
        row_panels, col_panels = _ceil(f["m"], s.rows), _ceil(f["n"], s.cols)
        cols = col_panels * s.cols
        act_words = row_panels * (f["k"] // s.k_group)
        act = self.buffers[Buffer.ACT][f["act_addr"]:f["act_addr"] + act_words]
        a = act_from_image(act, row_panels * s.rows, f["k"], s)
        wts = self.buffers[Buffer.WEIGHT][f["weight_addr"]:f["weight_addr"] + col_panels * beats]
        values, positions, meta = weights_from_image(wts, f["k"], cols, s, pid)
        bad = self._malformed(positions, meta, pid)
        if bad:
            self.status.meta_error = True
            self.status.bad_groups += bad * s.weight_passes(f["m"])  # each time they stream
        self.status.array_beats += row_panels * col_panels * beats
        acc = np.zeros((row_panels * s.rows, cols), dtype=np.int64)
        if s.runtime:  # lane i reads block i of the beat's activation window at its index;
            pattern = s.patterns[pid]   # an array beat of beat_groups PE rows: one beat each
            beats *= s.beat_groups
            vg = values.reshape(beats, s.n, -1)
            pg = window_positions(positions, pattern, s.n, s.m).reshape(beats, s.n, -1)
        else:
            vg = values.reshape(beats, s.beat_n, -1)
            pg = positions.reshape(beats, s.beat_n, -1)
        for p in range(row_panels):
            rows = slice(p * s.rows, (p + 1) * s.rows)
            if s.runtime:
                source = act_windows(a[rows], pattern, s.n, s.m)   # (R, beats, N*Mmax)
            else:
                source = a[rows].reshape(s.rows, beats, s.beat_m)
            kept = source[:, np.arange(beats)[:, None, None], pg]  # (R, beats, N, cols)
            if s.kind in ("fp", "mx"):  # per output: its beats' N kept (act, weight) code pairs
                pairs_a = kept.transpose(0, 3, 1, 2)                  # (R, cols, beats, N)
                pairs_w = np.broadcast_to(vg.transpose(2, 0, 1), pairs_a.shape)
                if s.kind == "fp":   # the sums the accumulator adds: a dot-product beat's,
                    step = s.n * s.saturation_groups   # else each K-group's
                    pairs_a, pairs_w = (x.reshape(*x.shape[:2], -1, step) for x in (pairs_a, pairs_w))
                    bits, flags = fp_mac(s.act_format, pairs_a, s.weight_format, pairs_w,
                                         s.accumulate, s.fp_lanes or 1, s.fp_acc_bits)
                else:   # the scales seen with each beat: the row's (ACT) and column's (WEIGHT)
                    words = act[p * beats:(p + 1) * beats]
                    a_side = act_sides(words, s).T[:, None, :]         # (R, 1, beats)
                    w_side = weight_sides(wts, f["k"], cols, s).T[None, :, :]  # (1, cols, beats)
                    a_side, w_side = np.broadcast_arrays(a_side, w_side)
                    bits, flags = mx_mac(s.act_format, pairs_a, pairs_w, a_side, w_side,
                                         s.beat_m, s.fp_lanes)
                acc[rows], overflowed = bits.astype(np.int64), bool(flags.any())
            else:   # exact sums of `step` K-groups, then the accumulator's policy
                step = 1 if s.runtime else s.beat_n // (s.n * s.saturation_groups)  # per beat
                split = kept.reshape(s.rows, beats * step, -1, cols)
                sums = np.einsum("rgjc,gjc->grc", split, vg.reshape(beats * step, -1, cols))
                acc[rows], overflowed = _accumulate(sums, s.acc_width, s.overflow)
            self.status.overflow |= overflowed
        return acc

    def _malformed(self, positions, meta, pid):
        """Malformed metadata groups (column x K-group) of a GEMM's weights, as the decoders
        count them (SPEC 1): `positions`, `meta` as weights_from_image returns them."""
        s = self.shape
        if s.dense:
            return 0
        if s.runtime:
            beats = positions.shape[0] // s.n
            ids = np.full((beats, positions.shape[1]), pid, dtype=np.int64)
            return int(runtime_bad_groups(ids, positions, s.n, s.m).sum())
        if s.encoding == "bitmap":   # per K-group: its M bits of the beat's bitmap
            groups = [(meta >> (b * s.m)) & ((1 << s.m) - 1) for b in range(s.beat_groups)]
            popcount = np.vectorize(lambda x: bin(int(x)).count("1"))(np.stack(groups))
            return int((popcount != s.n).sum())
        meta = meta.reshape(*meta.shape[:2], s.beat_groups, s.n)   # per K-group: its N indices
        bad = (meta >= s.m).any(axis=3) | (np.diff(meta, axis=3) <= 0).any(axis=3)
        return int(bad.sum())

    def _gemm(self, f):
        s = self.shape
        acc = self.gemm_accumulators(f)
        m_rows, n_cols = f["m"], f["n"]
        if s.kind != "int":   # pass-through: the FP32 result bits
            y = acc[:m_rows, :n_cols]
        else:
            bias, mult, shift = params_from_image(
                self.buffers[Buffer.PARAM][f["param_addr"]:f["param_addr"] + n_cols])
            y = requantize(acc[:m_rows, :n_cols], bias, mult, shift, s.act_width, s.acc_width,
                           relu=bool(f["relu"]), raw=bool(f["raw"]))
        if f["to_act"]:
            padded = np.zeros_like(acc)
            padded[:m_rows, :n_cols] = y
            words = act_image(padded, s)
            self.buffers[Buffer.ACT][f["dst_addr"]:f["dst_addr"] + len(words)] = words
        else:
            out = self.buffers[Buffer.OUT]
            flat = [int(x) for x in y.reshape(-1)]
            out[f["dst_addr"]:f["dst_addr"] + len(flat)] = flat


# Hazards between commands that may run at the same time.

def accesses(fields, shape):
    """(reads, writes) of a decoded, accepted command: lists of (Buffer, start, stop)."""
    opcode = fields["opcode"]
    if opcode == Opcode.LOAD:
        f = fields["load"]
        return [], [(Buffer(f["buffer"]), f["addr"], f["addr"] + f["count"])]
    if opcode == Opcode.STORE:
        f = fields["store"]
        return [(Buffer.OUT, f["addr"], f["addr"] + f["count"])], []
    if opcode == Opcode.GEMM:
        f = fields["gemm"]
        act_words = f["k"] // shape.k_group
        beats = f["k"] // shape.span(f["pattern"])
        row_panels, col_panels = _ceil(f["m"], shape.rows), _ceil(f["n"], shape.cols)
        reads = [(Buffer.ACT, f["act_addr"], f["act_addr"] + row_panels * act_words),
                 (Buffer.WEIGHT, f["weight_addr"], f["weight_addr"] + col_panels * beats),
                 (Buffer.PARAM, f["param_addr"], f["param_addr"] + f["n"])]
        if f["to_act"]:
            size = row_panels * col_panels * shape.cols // shape.k_group
            writes = [(Buffer.ACT, f["dst_addr"], f["dst_addr"] + size)]
        else:
            writes = [(Buffer.OUT, f["dst_addr"], f["dst_addr"] + f["m"] * f["n"])]
        return reads, writes
    return [], []


def may_overlap(commands, shape):
    """Pairs (i, j), i < j, of accepted commands the controller may run at the same time: in
    order dispatch, one command per unit, `wait` as a barrier (rtl.isa)."""
    decoded = [decode(encode(c)) for c in commands]
    accepted = [check(f, shape) == Error.NONE for f in decoded]
    units = [UNIT_OF[f["opcode"]] if ok else Unit.NONE for f, ok in zip(decoded, accepted)]
    pairs = []
    for j, fj in enumerate(decoded):
        if units[j] == Unit.NONE or fj["wait"]:
            continue
        seen = set()
        for i in range(j - 1, -1, -1):
            if units[i] != Unit.NONE and units[i] not in seen:
                if units[i] != units[j]:
                    pairs.append((i, j))
                seen.add(units[i])
            if decoded[i]["wait"] and accepted[i]:
                break
    return pairs, decoded


def hazards(commands, shape):
    """Every conflict between commands that may overlap: (i, j, buffer, kind) where kind is
    "RAW", "WAR" or "WAW" in program order (i before j). An empty list: the program's result
    does not depend on how the controller overlaps it."""
    pairs, decoded = may_overlap(commands, shape)
    found = []
    for i, j in pairs:
        ri, wi = accesses(decoded[i], shape)
        rj, wj = accesses(decoded[j], shape)
        for kind, first, second in (("RAW", wi, rj), ("WAR", ri, wj), ("WAW", wi, wj)):
            for b1, s1, e1 in first:
                for b2, s2, e2 in second:
                    if b1 == b2 and s1 < e2 and s2 < e1:
                        found.append((i, j, b1, kind))
    return found
