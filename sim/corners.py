"""The array regression's prelude: corners random GEMMs do not reach, driven on the raw ports
before the stream drivers start (long runs of equal beats: no Python driver per beat).

1. `overflow_tile` (int kinds): one output tile of long K whose sums end just inside and just
   outside the signed acc_width range, both signs, and some that overflow mid-tile and then move
   back (wrap and saturate differ there). The accumulator applies its policy after every beat's
   sum (golden.gemm: per beat, not per product and not per tile); the trim beats come first, so
   no intermediate sum leaves the range before the last beat of columns 0 and 1:
     col 0: row 0 ends at 2^(A-1)-1 (inside), row 1 at 2^(A-1) (outside, positive);
     col 1: row 0 ends at -2^(A-1) (inside), row 1 at -2^(A-1)-1 (outside, negative);
     col 2 / col 3: overflow positive / negative mid-tile, then the last beat moves them back.
   Checked bit for bit against golden.gemm.gemm_int, with the overflow flag.
2. `overflow_each_pe` (int kinds, fp with exact accumulation): each PE alone overflows (from
   reset) and must raise the sticky flag, which ORs all PEs and so cannot show one PE's
   detection in the tile above.
3. `fp_tiles` (fp kinds): special products (NaN, inf, inf * 0, +inf and -inf) in a tile's first
   beat only; with exact accumulation also sums that need FP32 rounding at every leading-bit
   position of the accumulator (ties to even both ways, one sticky bit above or below a tie) and
   a tile in which every PE leaves the range mid-tile (the tile's sticky bound must poison it).
4. `reset_mid_run`: a finished tile waiting in the output queue and the next tile half streamed,
   then reset: every flag, counter and queued result must be gone (the regression that follows
   checks the accumulators start from zero).
5. `count_bad_groups_up`: one beat malformed in every group, repeated COUNT_BEATS times: the
   32-bit `bad_groups` counter must reach exactly that many beats' worth (its bits up to 2^17
   on a 4-column array move; a run's malformed GEMMs inject a few hundred groups).
"""
import numpy as np
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from ..golden.gemm import gemm_int
from ..golden.ints import int_range
from .array_model import ArrayModel
from .harness import cycle, skip_cycles, watchdog_bound
from .kinds import Operands
from .payload import pack, unpack

MAX_OVERFLOW_BEATS = 1 << 18   # longer tiles (wide accumulators) are skipped
MAX_SWEEP_BEATS = 1 << 20      # overflow_each_pe's default budget: every PE of a 4x4 INT8 32-bit array
MAX_ROUNDING_BEATS = 1 << 18   # fp_tiles' rounding tiles (FP8 E4M3, 53-bit accumulator: 2 x 86 901 beats)
COUNT_BEATS = 1 << 15          # count_bad_groups_up: all-malformed beats in a row


def overflow_segments(rows, cols, n, m, act_width, weight_width, acc_width):
    """The tile as run-length segments [(a (rows, M), w (M, cols), beats)], or None when it would
    need more than MAX_OVERFLOW_BEATS beats."""
    lo_a = int_range(act_width)[0]
    lo_w, hi_w = int_range(weight_width)
    up, down = n * lo_a * lo_w, n * lo_a * hi_w          # the largest beat sums of each sign
    half = 1 << (acc_width - 1)
    n0, r0 = divmod(half - 1, up)                        # col 0: n0 bulk beats + r0 of trims
    n1, r1 = divmod(half, -down)                         # col 1: n1 bulk beats - r1 of trims
    bulk = max(n0, n1)
    if bulk + 2 * max(r0, r1) // max(hi_w, 1) + 4 > MAX_OVERFLOW_BEATS:
        return None
    cols_used = min(cols, 4)
    segments = []

    def beat(act_row, weights, count=1):
        """act_row: (rows, M) activations; weights: per column a value at positions 0..N-1."""
        w = np.zeros((m, cols), dtype=np.int64)
        for c, value in weights.items():
            if c < cols:
                w[:n, c] = value
        segments.append((np.asarray(act_row, dtype=np.int64), w, count))

    unit = np.zeros((rows, m), dtype=np.int64)
    unit[:, 0] = 1
    left = {0: r0, 1: -r1, 2: 0, 3: 0}
    while any(left.values()):                            # trims: activation 1 at position 0
        step = {c: max(lo_w, min(hi_w, v)) for c, v in left.items()}
        w = np.zeros((m, cols), dtype=np.int64)
        for c, value in step.items():
            if c < cols:
                w[0, c] = value
        segments.append((unit, w, 1))
        left = {c: left[c] - step[c] for c in left}
    row_diff = np.zeros((rows, m), dtype=np.int64)
    if rows > 1:
        row_diff[1, 0] = 1
    w = np.zeros((m, cols), dtype=np.int64)
    w[0, :cols_used] = [1, -1, 0, 0][:cols_used]
    segments.append((row_diff, w, 1))
    full = np.full((rows, m), lo_a, dtype=np.int64)
    early = {0: bulk - n0, 1: bulk - n1}                 # beats before a column starts
    start = sorted(set(early.values()) | {0, bulk})
    for lo, hi in zip(start, start[1:]):
        if hi > lo:
            beat(full, {0: lo_w if lo >= early[0] else 0, 1: hi_w if lo >= early[1] else 0,
                        2: lo_w, 3: hi_w}, hi - lo)
    beat(full, {2: hi_w, 3: lo_w})                       # the last beat: back towards range
    return segments


async def overflow_tile(dut, info, log):
    """Stream the overflow tile at full speed and check its result and the overflow flag."""
    p = info["parameters"]
    model = ArrayModel(info)
    kind = model.kind
    if p["pe_kind"] != "int":
        return
    if model.runtime:
        kind.use_patterns([f"{model.n}:{model.m}"])
        kind.next_pattern()
    segments = overflow_segments(model.rows, model.cols, model.n, model.m, kind.act_width,
                                 kind.weight_width, kind.acc_width)
    if segments is None:
        log(f"overflow tile skipped: acc_width {kind.acc_width} needs more than {MAX_OVERFLOW_BEATS} beats")
        return
    total = sum(count for _, _, count in segments)
    a = np.concatenate([np.repeat(x, count, axis=1) if count > 1 else x for x, _, count in segments], axis=1)
    w = np.concatenate([np.repeat(y, count, axis=0) if count > 1 else y for _, y, count in segments], axis=0)
    want, overflowed = gemm_int(a, w, model.m, kind.acc_width, kind.overflow)
    got = await stream_tile(dut, model, [(kind.operands(x, y), count) for x, y, count in segments],
                            "the overflow tile")
    assert np.array_equal(got, want), (f"overflow tile ({total} beats, {kind.overflow}, "
                                       f"acc_width {kind.acc_width}) differs\ngot\n{got}\nwant\n{want}")
    await ClockCycles(dut.clk, 4)
    assert bool(dut.overflow.value) == overflowed, \
        f"overflow flag {int(dut.overflow.value)} after the overflow tile, golden says {overflowed}"
    log(f"overflow tile: {total} beats at full speed, sums at the acc_width {kind.acc_width} "
        f"range edges ({kind.overflow}) match golden")


async def stream_tile(dut, model, segments, what):
    """Stream one output tile given as run-length segments [(Operands of one beat, repeats)] on
    the raw ports at full speed (the last beat alone carries `last`); returns the result tile."""
    last_bit = model.act_layout
    dut.result__ready.value = 0
    dut.act__valid.value = dut.weight__valid.value = 1
    for number, (ops, count) in enumerate(segments):
        act, weight = next(model.beats(ops))
        dut.act__payload.value, dut.weight__payload.value = without_last(last_bit, act), weight
        if number == len(segments) - 1:
            await skip_cycles(dut, count - 1)
            dut.act__payload.value = act
            count = 1
        await skip_cycles(dut, count)
    dut.act__valid.value = dut.weight__valid.value = 0
    got = await take_result(dut, watchdog_bound(model.latency, 0, 0), what)
    return np.array(unpack(model.result_layout, got))


def joined(segments):
    """The Operands of a whole tile given as run-length segments (for the golden model)."""
    parts = [ops for ops, count in segments for _ in range(count)]
    return Operands(np.concatenate([p.a for p in parts], axis=1),
                    np.concatenate([p.values for p in parts]), np.concatenate([p.indices for p in parts]))


async def fp_tiles(dut, info, log):
    """fp kinds: with exact accumulation FpKind.rounding_tiles (ties and sticky bits at every
    leading-bit position; the flag stays down), then FpKind.special_tiles (a NaN / inf product
    in the first beat only), then with exact accumulation FpKind.bound_tile (every PE past the
    range mid-tile); each tile checked bit for bit against the golden model, and the sticky
    overflow flag after each; reset at the end."""
    model = ArrayModel(info)
    kind = model.kind
    if info["parameters"]["pe_kind"] != "fp":
        return
    rounding = kind.rounding_tiles(model.rows, model.cols, MAX_ROUNDING_BEATS)
    named = [(f"rounding tile {i} ({sum(c for _, c in t)} beats)", t) for i, t in enumerate(rounding)]
    named += [(f"special tile {i}", t) for i, t in enumerate(kind.special_tiles(model.rows, model.cols))]
    if kind.accumulate == "exact":
        named.append(("the mid-tile bound tile", kind.bound_tile(model.rows, model.cols)))
    flag = False
    for what, segments in named:
        want, overflowed = kind.golden(joined([(model.whole_beats(ops), count)
                                               for ops, count in segments]))
        flag |= overflowed
        got = await stream_tile(dut, model, segments, what)
        assert np.array_equal(got, want), (f"{what} differs\ngot\n{[[hex(v) for v in r] for r in got]}\n"
                                           f"want\n{[[hex(v) for v in r] for r in want]}")
        await ClockCycles(dut.clk, 4)
        assert bool(dut.overflow.value) == flag, \
            f"overflow flag {int(dut.overflow.value)} after {what}, golden says {flag}"
    await pulse_reset(dut)
    log(f"fp corner tiles: {len(named)} (specials mid-tile, {len(rounding)} rounding tiles with "
        f"ties and sticky bits, mid-tile bound) match golden")


async def overflow_each_pe(dut, info, rng, log, budget=MAX_SWEEP_BEATS):
    """The sticky `overflow` flag ORs every PE's overflow, so a tile in which every PE
    overflows at once cannot tell whether each PE's detection works. Here each PE in turn is
    the only one to leave its accumulator's range (kinds with `overflow_alone`: int, fp with
    exact accumulation, and mx, whose largest block overflows FP32): from reset, one tile of the
    beat that gives that PE alone its largest sum, repeated for the fewest beats that pass the
    range (mx: one block), the last beat closing the tile; the flag must then be up (int raises
    it at the beat, fp exact and mx with the poisoned result). At most `budget` beats in all
    (R*C*2^(A-1)/(N*2^14) for INT8: 2^20 for a 4x4 array with a 32-bit accumulator): beyond
    that a seeded sample of the PEs (always including the first and the last); none if 0."""
    model = ArrayModel(info)
    kind = model.kind
    if not hasattr(kind, "overflow_alone") or budget <= 0:
        return
    if model.runtime:
        kind.use_patterns([f"{model.n}:{model.m}"])
        kind.next_pattern()
    first = kind.overflow_alone(model.rows, model.cols, 0, 0)
    if first is None:
        return
    count = first[1]
    pes = [(r, c) for r in range(model.rows) for c in range(model.cols)]
    if len(pes) * count > budget and len(pes) > 2:
        middle = rng.choice(range(1, len(pes) - 1), min(len(pes) - 2, max(0, budget // count - 2)),
                            replace=False)
        pes = [pes[0]] + [pes[i] for i in sorted(middle)] + [pes[-1]]
    last_bit = info["interfaces"]["act"]["payload"]
    dut.result__ready.value = 0
    for r, c in pes:
        await pulse_reset(dut)
        ops, _ = kind.overflow_alone(model.rows, model.cols, r, c)
        act, weight = next(model.beats(ops))  # one beat: a whole tile, `last` set
        dut.act__payload.value, dut.weight__payload.value = without_last(last_bit, act), weight
        dut.act__valid.value = dut.weight__valid.value = 1
        await skip_cycles(dut, count - 1)
        dut.act__payload.value = act
        await RisingEdge(dut.clk)
        dut.act__valid.value = dut.weight__valid.value = 0
        await ClockCycles(dut.clk, model.latency + 4)
        assert dut.overflow.value == 1, (f"overflow flag 0 after PE ({r}, {c}) alone summed "
                                         f"{count} beats past its accumulator's range (cycle {cycle()})")
    await pulse_reset(dut)
    log(f"overflow of each PE alone: {len(pes)} of {model.rows * model.cols} PEs, {count} beats "
        f"each, raise the flag")


def without_last(last_bit, act):
    """The activation beat `act` (packed) with its `last` bit cleared."""
    return pack(last_bit, unpack(last_bit, act) | {"last": 0})


async def pulse_reset(dut):
    """Two cycles of reset, then one idle cycle."""
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


async def take_result(dut, bound, what):
    """The next result beat (raw ports, consumer ready); the watchdog fails after `bound` cycles."""
    dut.result__ready.value = 1
    for _ in range(bound):
        await RisingEdge(dut.clk)
        await ReadOnly()
        if dut.result__valid.value == 1:
            payload = int(dut.result__payload.value)
            await RisingEdge(dut.clk)
            dut.result__ready.value = 0
            return payload
    raise AssertionError(f"watchdog: stream 'result' stalled: no beat for {bound} cycles at cycle "
                         f"{cycle()} (waiting for {what})")


async def reset_mid_run(dut, info, rng):
    """A tile left in the output queue, the next one half streamed, then reset: afterwards no
    result, no flag and a zero bad-group count."""
    model = ArrayModel(info)
    ops = model.random_gemm(rng)
    beats = list(model.beats(ops))
    per_tile = len(beats) // len(list(model.tiles(np.zeros((ops.a.shape[0], ops.values.shape[1])))))
    plan = beats[:per_tile] + beats[per_tile:][:max(1, per_tile // 2)]
    dut.result__ready.value = 0
    for act, weight in plan:
        dut.act__payload.value, dut.weight__payload.value = act, weight
        dut.act__valid.value = dut.weight__valid.value = 1
        await RisingEdge(dut.clk)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.act__valid.value = dut.weight__valid.value = 0
    dut.rst.value = 0
    for _ in range(model.latency + 4):
        await RisingEdge(dut.clk)
        await ReadOnly()
        assert dut.result__valid.value == 0, f"a result left the array after reset (cycle {cycle()})"
        flags = (int(dut.overflow.value), int(dut.meta_error.value), int(dut.bad_groups.value))
        assert flags == (0, 0, 0), \
            f"flags (overflow, meta_error, bad_groups) {flags} not cleared by reset (cycle {cycle()})"
    await RisingEdge(dut.clk)


async def count_bad_groups_up(dut, info, rng, log, beats=COUNT_BEATS):
    """From reset, the first beat of a shortest-tile GEMM with every metadata group malformed
    (ArrayModel.corrupt, every kind in turn), repeated `beats` times at full speed (the
    simulator alone) with `last` on the final one: `bad_groups` must then be exactly `beats`
    times that beat's bad groups, with `meta_error` up; reset at the end (the results are spoiled
    and unchecked). Designs that cannot carry malformed metadata (dense, 1:M index) skip it."""
    model = ArrayModel(info)
    if model.dense or not model.malformations() or beats <= 0:
        return
    ops = model.random_gemm(rng, (model.rows, None, model.cols))
    pairs = ops.indices.shape[0] // model.n * model.cols  # (K-group or word, column) pairs
    injected, _ = model.corrupt(rng, ops, pairs * model.n)  # all (a word: up to N/N' groups)
    tile = list(model.beats(ops))
    assert len(tile) == 1 or not model.runtime, "a run-time design's shortest tile is one beat"
    per_beat = injected // len(tile)  # every group is malformed: the same count in every beat
    act, weight = tile[0]
    await pulse_reset(dut)
    dut.result__ready.value = 0
    dut.act__payload.value, dut.weight__payload.value = without_last(model.act_layout, act), weight
    dut.act__valid.value = dut.weight__valid.value = 1
    await skip_cycles(dut, beats - 1)
    dut.act__payload.value = act
    await RisingEdge(dut.clk)
    dut.act__valid.value = dut.weight__valid.value = 0
    await ClockCycles(dut.clk, model.latency + 4)  # every column has seen the last beat
    counted = int(dut.bad_groups.value)
    assert counted == beats * per_beat and dut.meta_error.value == 1, (
        f"bad_groups {counted} after {beats} beats of {per_beat} malformed groups each (want "
        f"{beats * per_beat}, cycle {cycle()})")
    await pulse_reset(dut)
    log(f"bad_groups counted up to {counted} ({beats} beats of {per_beat} malformed groups)")
