"""How GEMMs map onto a generated array's streams: beats in, result tiles out (used by the array
regression, the board testbench and the host library alike; no cocotb here)."""
import dataclasses

import numpy as np

from ..golden.nm import (act_windows, beat_span, parse_runtime_pattern, pattern_id_bits,
                         runtime_bad_groups, runtime_index_bits, runtime_patterns)
from .kinds import Operands, kind_model
from .payload import pack


def bitmap_of(indices):
    """The M-bit bitmap of one group's indices (bit i = element i kept); a repeated index sets
    one bit, so a malformed index group stays malformed."""
    return sum(1 << int(i) for i in set(int(i) for i in indices))


def metadata_fields(weight_element_layout):
    """The metadata fields a weight element carries: ["indices"], ["bitmap"], [] (dense) or,
    on a run-time design, ["indices", "pattern"]."""
    return [name for name in ("indices", "bitmap", "pattern")
            if name in weight_element_layout["fields"]]


def column_payload(ops, g, c, n, metadata, m=None, groups=1):
    """The weight payload of column `c` for beat `g` of `groups` K-groups of M (N values each):
    values, metadata (each group's bitmap at bit group*M), side (the beat's last group's: the
    MAC samples sides that change within a tile, e.g. mpgemm's output stage, on a group's last
    beat)."""
    lanes = slice(g * groups * n, (g + 1) * groups * n)
    column = {"values": ops.values[lanes, c]}
    if "indices" in metadata:
        column["indices"] = ops.indices[lanes, c]
    if "bitmap" in metadata:
        column["bitmap"] = 0
        for i, group in enumerate(range(g * groups, (g + 1) * groups)):
            flip = 0 if ops.bitmap_flip is None else int(ops.bitmap_flip[group, c])
            bitmap = bitmap_of(ops.indices[group * n:(group + 1) * n, c]) ^ flip
            column["bitmap"] |= bitmap << (i * m if groups > 1 else 0)
    if "pattern" in metadata:
        column["pattern"] = ops.pattern_ids[g, c]
    if ops.w_side is not None:
        column["side"] = ops.w_side[(g + 1) * groups - 1, c]
    return column


class ArrayModel:
    """Turns GEMMs into stream beats for one generated array, and its output beats back into tiles."""

    def __init__(self, info):
        p = info["parameters"]
        self.rows, self.cols, self.n, self.m = p.get("tile_rows", p["rows"]), p["cols"], p["n"], p["m"]
        self.groups = p.get("beat_groups", 1)   # K-groups per beat (dot-product: rows)
        self.dense = p["dense"]
        self.runtime = bool(p.get("runtime"))
        # activations per row and beat
        self.window = p["window"] if self.runtime else self.m * self.groups
        self.kind = kind_model(info)
        interfaces = info["interfaces"]
        self.act_layout = interfaces["act"]["payload"]
        self.weight_layout = interfaces["weight"]["payload"]
        self.result_layout = interfaces["result"]["payload"]
        self.metadata = metadata_fields(self.weight_layout["element"])
        self.latency = info["latency_cycles"]

    def random_gemm(self, rng, shape=None, extreme=False) -> Operands:
        """Operands of a random GEMM (sim.kinds); K a random multiple of the kind's k_multiple
        (`shape` (M, None, N): the shortest tiles, K = k_multiple). A run-time design moves to
        the next pattern of its plan first (`use_patterns`)."""
        if self.runtime:
            self.kind.next_pattern()
        if shape is not None and shape[1] is None:
            shape = (shape[0], self.kind.k_multiple, shape[2])
        if shape is None:
            step = self.kind.k_multiple
            shape = (self.rows * int(rng.integers(1, 3)), step * int(rng.integers(1, max(4, 7 * self.window // step + 1))),
                     self.cols * int(rng.integers(1, 3)))
        return self.kind.random_gemm(rng, shape, extreme)

    def use_patterns(self, names):
        """Run-time designs: the patterns successive GEMMs use, in turn (e.g. ["4:8", "dense"])."""
        if not self.runtime:
            raise ValueError("patterns can only be chosen on a run-time design (sparsity.runtime)")
        self.kind.use_patterns(names)

    def malformations(self):
        """The kinds of malformed metadata this design's encoding can carry (MALFORMATIONS)."""
        if self.dense:
            return []
        if self.runtime:
            return ["unknown id", "repeat", "descend", "range"]
        return list(BITMAP_MALFORMATIONS if "bitmap" in self.metadata
                    else INDEX_MALFORMATIONS if self.n >= 2 else ())

    def corrupt(self, rng, ops, count):
        """Make `count` metadata groups of `ops` malformed (in place), every kind of
        `malformations()` in turn; returns (how many bad groups the hardware must count per row
        tile that streams them, the set of columns whose results they spoil)."""
        if self.runtime:
            return corrupt_runtime(rng, ops, self.n, self.m, count, self.cols)
        if "bitmap" in self.metadata:
            bad, ops.bitmap_flip = corrupt_bitmaps(rng, ops.indices, self.n, self.m, count, self.cols)
        else:
            bad, ops.indices = corrupt_groups(rng, ops.indices, self.n, self.m, count,
                                              self.malformations(), self.cols)
        return len(bad), {c for _, c in bad}

    def sweep_gemm(self, rng, name):
        """Run-time designs: a random GEMM of R rows x 2C columns in pattern `name`, long enough
        for `corrupt_sweep` (moves the pattern plan to `name`: `use_patterns`)."""
        pattern = parse_runtime_pattern(name, self.n, self.m)
        self.use_patterns([name])
        words = len(runtime_sweep_plan(pattern, self.n, self.m))
        return self.random_gemm(rng, (self.rows, words * beat_span(pattern, self.n), 2 * self.cols))

    def corrupt_sweep(self, rng, ops):
        """Give the first C columns of a `sweep_gemm` (one per array column, so every column's
        counting decoder sees them), word by word, every malformation of its pattern
        (`runtime_sweep_plan`), in place; the other C columns stay checked. Returns (bad groups
        injected, columns spoiled)."""
        return sweep_runtime(rng, ops, self.n, self.m, self.cols)

    def whole_beats(self, ops):
        """`ops` with K padded to whole beats (a dot-product beat spans several K-groups; the
        corner tiles are built one K-group per beat): zero activations and weights, indices
        0..N-1, the scales of the last group repeated. Pads nothing on other designs."""
        k = ops.a.shape[1]
        short = -k % self.window if not self.runtime else 0
        if not short:
            return ops
        groups, cols = short // self.m, ops.values.shape[1]
        pad = {"a": np.pad(ops.a, ((0, 0), (0, short))),
               "values": np.pad(ops.values, ((0, groups * self.n), (0, 0))),
               "indices": np.concatenate([ops.indices, np.tile(np.arange(self.n)[:, None],
                                                               (groups, cols))])}
        if ops.a_side is not None:
            pad["a_side"] = np.pad(ops.a_side, ((0, 0), (0, groups)), mode="edge")
        if ops.w_side is not None:
            pad["w_side"] = np.pad(ops.w_side, ((0, groups), (0, 0)), mode="edge")
        if ops.bitmap_flip is not None:
            pad["bitmap_flip"] = np.pad(ops.bitmap_flip, ((0, groups), (0, 0)))
        return dataclasses.replace(ops, **pad)

    def beats(self, ops):
        """Input beats (act, weight) for every output tile, row tiles outer, column tiles inner."""
        ops = self.whole_beats(ops)
        groups = ops.a.shape[1] // self.window
        if self.runtime:  # windows of N*Mmax activations, one beat = N/N' groups of M'
            windows = act_windows(ops.a, parse_runtime_pattern(ops.pattern, self.n, self.m),
                                  self.n, self.m)
            groups = windows.shape[1]
        for i in range(0, ops.a.shape[0], self.rows):
            for j in range(0, ops.values.shape[1], self.cols):
                for g in range(groups):
                    data = (windows[i:i + self.rows, g] if self.runtime
                            else ops.a[i:i + self.rows, g * self.window:(g + 1) * self.window])
                    act = {"data": data, "last": int(g == groups - 1)}
                    if ops.a_side is not None:
                        act["side"] = ops.a_side[i:i + self.rows, (g + 1) * self.groups - 1]
                    cols = [column_payload(ops, g, c, self.n, self.metadata, self.m, self.groups)
                            for c in range(j, j + self.cols)]
                    yield pack(self.act_layout, act), pack(self.weight_layout, cols)

    def tiles(self, c):
        for i in range(0, c.shape[0], self.rows):
            for j in range(0, c.shape[1], self.cols):
                yield (i, j), c[i:i + self.rows, j:j + self.cols]


# Malformed metadata (SPEC section 1) a fixed design's encoding can carry. An index >= M cannot
# be encoded in ceil(log2 M) bits (M is a power of two), so only run-time designs (index >= M')
# have "range"; a 1:M index group cannot be malformed at all.
INDEX_MALFORMATIONS = ("repeat", "descend")     # a repeated index; two indices swapped
BITMAP_MALFORMATIONS = ("fewer", "more")         # popcount N-1; popcount N+1


def column_subset(ops, keep):
    """`ops` with only the GEMM columns `keep` (every per-column field sliced)."""
    per_column = {name: getattr(ops, name)[:, keep] for name in
                  ("values", "indices", "w_side", "pattern_ids", "bitmap_flip")
                  if getattr(ops, name) is not None}
    return dataclasses.replace(ops, **per_column)


def _pick_groups(rng, groups, cols, count, tile_cols=None):
    """`count` distinct (group, column) pairs: first one beat across up to every column of the
    array (`tile_cols` wide: one GEMM column per array column, so that each column's counting
    decoder sees a bad group when count >= tile_cols, and the bad-group counter must add
    several columns in one cycle), then random ones."""
    count = min(count, groups * cols)
    tile_cols = min(tile_cols or cols, cols)
    beat = int(rng.integers(groups))
    first = [(beat, int(rng.choice(range(c, cols, tile_cols))))
             for c in rng.permutation(tile_cols)[:min(tile_cols, max(count, 1))]]
    rest = [divmod(int(f), cols) for f in rng.permutation(groups * cols)]
    return list(dict.fromkeys(first + rest))[:count]


def corrupt_groups(rng, indices, n, m, count, ways=("repeat",), tile_cols=None):
    """Make `count` distinct (group, column) index groups malformed, taking `ways`
    (INDEX_MALFORMATIONS) in turn; returns their set and the new indices."""
    groups, cols = indices.shape[0] // n, indices.shape[1]
    chosen = _pick_groups(rng, groups, cols, count, tile_cols) if ways else []
    bad = indices.copy()
    for number, (g, c) in enumerate(chosen):
        group = bad[g * n:(g + 1) * n, c]
        if ways[number % len(ways)] == "repeat":
            group[-1] = group[0]  # not strictly increasing (a bitmap of it has N-1 bits)
        else:
            group[0], group[1] = group[1], group[0]  # descending
    return set(chosen), bad


def corrupt_bitmaps(rng, indices, n, m, count, tile_cols=None):
    """Bitmap designs: `count` distinct (group, column) bitmaps get one kept bit cleared
    (popcount N-1) or one other bit set (N+1), in turn; returns their set and the XOR masks
    (groups, cols) for Operands.bitmap_flip."""
    groups, cols = indices.shape[0] // n, indices.shape[1]
    chosen = _pick_groups(rng, groups, cols, count, tile_cols)
    flip = np.zeros((groups, cols), dtype=np.int64)
    for number, (g, c) in enumerate(chosen):
        kept = [int(i) for i in indices[g * n:(g + 1) * n, c]]
        pool = kept if number % 2 == 0 else [i for i in range(m) if i not in kept]
        flip[g, c] = 1 << int(rng.choice(pool))
    return set(chosen), flip


def row_beats(info, ops):
    """Per row of `ops.a`, the activations of each beat: (rows, beats, group), where group is M,
    or a run-time design's window (golden.nm.act_windows)."""
    p = info["parameters"]
    if p.get("runtime"):
        return act_windows(ops.a, parse_runtime_pattern(ops.pattern, p["n"], p["m"]), p["n"], p["m"])
    a = np.asarray(ops.a)
    return a.reshape(a.shape[0], a.shape[1] // p["m"], p["m"])


def _runtime_ways(pattern, mmax):
    """How a group of pattern (N', M') can be broken by its indices (an index >= M' only where
    the index field can hold one)."""
    np_, mp = pattern
    return (["repeat", "descend"] if np_ >= 2 else []) + \
        (["range"] if mp < 1 << runtime_index_bits(mmax) else [])


def _break_group(rng, lanes, way, mp, index_limit):
    """One group's indices (its N' lanes, increasing) made malformed by `way`, in place."""
    if way == "repeat":
        lanes[-1] = lanes[0]
    elif way == "descend":
        lanes[0], lanes[1] = lanes[1], lanes[0]
    else:
        lanes[int(rng.integers(len(lanes)))] = int(rng.integers(mp, index_limit))


def runtime_sweep_plan(pattern, n, mmax):
    """The malformed words (one per beat) that one array column gets in pattern (N', M'): an
    unknown pattern id; each lane's index >= M' on its own (the lanes after it in its group moved
    up too where they fit, so the group stays increasing and only the range check sees it);
    one group broken each way; then 2 .. N/N' groups of one beat broken at once, so that every
    bit of a decoder's count of bad groups is set in some word."""
    np_, mp = pattern
    ways = _runtime_ways(pattern, mmax)
    plan = [("id", None)]
    if "range" in ways:
        plan += [("lane", lane) for lane in range(n)]
    plan += [("way", way) for way in ways]
    if ways:
        plan += [("groups", k) for k in range(2, n // np_ + 1)]
    return plan


def sweep_runtime(rng, ops, n, mmax, cols):
    """Apply the runtime_sweep_plan of `ops`' pattern to GEMM columns 0 .. cols-1 of `ops`, word
    b of each column taking step b, in place; returns (bad groups injected, columns spoiled), the
    count cross-checked with golden.nm.runtime_bad_groups."""
    np_, mp = parse_runtime_pattern(ops.pattern, n, mmax)
    plan = runtime_sweep_plan((np_, mp), n, mmax)
    table_len, ids_limit = len(runtime_patterns(n, mmax)), 1 << pattern_id_bits(n, mmax)
    index_limit = 1 << runtime_index_bits(mmax)
    ways = _runtime_ways((np_, mp), mmax)
    indices, ids = ops.indices.copy(), ops.pattern_ids.copy()
    assert ids.shape[0] >= len(plan) and ids.shape[1] >= cols, "the GEMM is too small for the plan"
    injected = 0
    for c in range(cols):
        for b, (step, arg) in enumerate(plan):
            group_rows = [slice(b * n + g * np_, b * n + (g + 1) * np_) for g in range(n // np_)]
            if step == "id":
                ids[b, c] = int(rng.integers(table_len, ids_limit))
                injected += 1
            elif step == "lane":
                rows = group_rows[arg // np_]
                lanes = indices[rows, c]
                for j in range(arg % np_, np_):
                    value = mp + j - arg % np_
                    if value >= index_limit:
                        break
                    lanes[j] = value
                indices[rows, c] = lanes
                injected += 1
            else:
                chosen = [int(rng.integers(n // np_))] if step == "way" else \
                    [int(g) for g in rng.choice(n // np_, size=arg, replace=False)]
                for turn, g in enumerate(chosen):
                    lanes = indices[group_rows[g], c]
                    _break_group(rng, lanes, arg if step == "way" else ways[turn % len(ways)],
                                 mp, index_limit)
                    indices[group_rows[g], c] = lanes
                injected += len(chosen)
    counted = int(runtime_bad_groups(ids, indices, n, mmax).sum())
    assert counted == injected, f"injected {injected} bad groups, golden counts {counted}"
    ops.indices, ops.pattern_ids = indices, ids
    return injected, set(range(cols))


def corrupt_runtime(rng, ops, n, mmax, count, tile_cols=None):
    """Run-time designs: make `count` metadata groups of a GEMM's beats malformed, in place
    (ops.indices, ops.pattern_ids); returns the number of bad groups injected (`count`, unless
    the GEMM has fewer words) and the set of columns hit. Random words (beat, column) are
    picked; each gets, in turn, an unknown pattern id (counts as one bad group) or 1..N/N' of
    its groups broken by their indices: a repeated index, two swapped (descending), or one >=
    M', each way in turn. 1:Mmax groups (one index, any value legal) can only be broken through
    the id. The count is cross-checked with golden.nm.runtime_bad_groups."""
    np_, mp = parse_runtime_pattern(ops.pattern, n, mmax)
    per_beat = n // np_
    table_len = len(runtime_patterns(n, mmax))
    ids_limit = 1 << pattern_id_bits(n, mmax)
    index_limit = 1 << runtime_index_bits(mmax)
    ways = _runtime_ways((np_, mp), mmax)
    indices, ids = ops.indices.copy(), ops.pattern_ids.copy()
    beats, cols = ids.shape
    injected, turn, columns = 0, 0, set()
    for b, c in _pick_groups(rng, beats, cols, beats * cols, tile_cols):
        if injected == count:
            break
        columns.add(c)
        turn += 1
        if not ways or turn % (len(ways) + 1) == 1:
            ids[b, c] = int(rng.integers(table_len, ids_limit))
            injected += 1
            continue
        take = int(rng.integers(1, min(per_beat, count - injected) + 1))
        for g in rng.choice(per_beat, size=take, replace=False):
            rows = slice(b * n + int(g) * np_, b * n + (int(g) + 1) * np_)
            lanes = indices[rows, c]
            _break_group(rng, lanes, ways[turn % len(ways)], mp, index_limit)
            indices[rows, c] = lanes
            turn += 1
        injected += take
    counted = int(runtime_bad_groups(ids, indices, n, mmax).sum())
    assert counted == injected, f"injected {injected} bad groups, golden counts {counted}"
    ops.indices, ops.pattern_ids = indices, ids
    return injected, columns
