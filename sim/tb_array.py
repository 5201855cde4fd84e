"""Array regression: random GEMMs tiled onto the R x C array, checked tile by tile against the PE
kind's golden model (sim.kinds: golden.gemm.sparse_gemm_int for "int", golden.fp_mac for "fp"),
under random stalls on every valid and every ready.

Environment: NMFORGE_MANIFEST, NMFORGE_SEED; NMFORGE_GEMMS (count), NMFORGE_STALL (pause
probability), NMFORGE_SHAPE ("MxKxN": one fixed GEMM, e.g. for throughput), NMFORGE_CORRUPT
(number of malformed index groups to inject), NMFORGE_RESULT_JSON (cycle counts are written
here; the corner GEMMs are marked by their role: "burst" (one-beat tiles), "sweep" (a run-time
design's malformed metadata), "queue" (the output queue filled), "rounding" (mx adder ties)),
NMFORGE_GEMM_FILE (an .npz with a, values, indices [, c]: run exactly that one GEMM, checked
against `c` when given, e.g. a product computed by PyTorch, else against the golden model).
With NMFORGE_SHAPE, NMFORGE_GEMMS (default 1) GEMMs of that shape run.
Run-time designs: NMFORGE_PATTERNS ("4:8,2:8,dense": successive GEMMs take these patterns in
turn; default: the design's whole table, with at least one GEMM per pattern when the corners
run: NMFORGE_GEMMS is raised to the table's length - 1, the shortest-tile GEMM takes the last).
NMFORGE_OVERLAP=1 streams every GEMM's beats back to
back without waiting for the previous GEMM's results (flags are then checked at the end, and
the result JSON has the total cycle count instead of per-GEMM ones).

Corners, in every random run (no NMFORGE_SHAPE / NMFORGE_GEMM_FILE) unless NMFORGE_CORNERS=0:
the prelude of sim.corners (int kinds: a long-K tile ending just inside and just outside the
accumulator range, both signs; int, fp-exact and mx kinds: each PE overflowing alone, at most
NMFORGE_SWEEP_BEATS beats in all (default corners.MAX_SWEEP_BEATS, 0: none); fp kinds: special
products mid-tile, and for exact accumulation FP32 rounding ties and sticky bits at every
leading-bit position and a mid-tile range overflow; every kind: reset in the middle of a run;
designs that can carry malformed metadata: `bad_groups` counted up over NMFORGE_COUNT_BEATS
all-malformed beats (default corners.COUNT_BEATS, 0: none), exactly); the last random GEMM
carries malformed metadata of every kind the encoding can carry, in one beat across every
column of the array and then at random
(ArrayModel.malformations; the spoiled columns go unchecked, the others are checked,
bad_groups exactly), unless NMFORGE_CORRUPT
sets a count per GEMM (`bad_groups` is also watched at every change: it may only grow, by at
most a beat's worth); and a final GEMM of one-beat (shortest) tiles streamed back to back with
the consumer ready, then stalled for longer than the output queue can absorb, then draining one
beat in four; run-time designs then run one GEMM per pattern whose first C columns carry every
malformation of that pattern in every array column (ArrayModel.sweep_gemm / corrupt_sweep: an
unknown id, each lane out of range, each way, 2 .. N/N' bad groups in one beat), drawn from a
random stream of their own so that everything before is drawn as without them; then a GEMM of
QUEUE_WRITES x (result_depth + 1) shortest tiles (its own random stream too) with the consumer
stalled until the output queue is full and one more result waits in the PEs, so that every
entry of every output FIFO is written several times and the full queue holds a PE's result;
mx kinds then run sim.mx_corners' tiles (no random draws): each FP32 adder of the MAC at a tie
or a rounding that one sticky bit decides, for every bit position and both signs.
After the last GEMM no further result beat may arrive (none duplicated).
The watchdog: a run that delivers no result beat for harness.watchdog_bound cycles fails, naming
the stream and the cycle.
"""
import itertools
import json
import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from .array_model import ArrayModel, column_subset
from .corners import (COUNT_BEATS, MAX_SWEEP_BEATS, count_bad_groups_up, fp_tiles,
                      overflow_each_pe, overflow_tile, reset_mid_run)
from .harness import CounterWatch, env_float, env_int, manifest, rngs, start, watchdog_bound
from .kinds import Operands
from .payload import unpack
from .streams import StreamMonitor, StreamSink, StreamSource, never_pause, random_pauses

QUEUE_WRITES = 4  # the queue GEMM writes every entry of every PE's output FIFO this often


def unspoiled_overflow(model, ops, spoiled):
    """The overflow the GEMM's columns outside `spoiled` must raise (spoiled columns, computed
    from malformed metadata: undefined)."""
    keep = [j for j in range(ops.values.shape[1]) if j not in spoiled]
    return bool(keep) and model.kind.golden(column_subset(ops, keep))[1]


@cocotb.test()
async def gemm_regression(dut):
    info = manifest()
    model = ArrayModel(info)
    rng, prng = rngs()
    stall = env_float("NMFORGE_STALL", 0.3)
    shape = os.environ.get("NMFORGE_SHAPE")
    corrupt = env_int("NMFORGE_CORRUPT", 0)
    gemm_file = os.environ.get("NMFORGE_GEMM_FILE")
    corners = not shape and not gemm_file and env_int("NMFORGE_CORNERS", 1) == 1
    gemm_count = 1 if gemm_file else env_int("NMFORGE_GEMMS", 1 if shape else 4)
    overlap = env_int("NMFORGE_OVERLAP", 0) == 1
    if os.environ.get("NMFORGE_PATTERNS"):
        model.use_patterns(os.environ["NMFORGE_PATTERNS"].split(","))
    elif model.runtime and corners:  # every pattern of the table once: the plan walks it in order,
        gemm_count = max(gemm_count, len(model.kind.names) - 1)  # the last in the shortest-tile GEMM

    await start(dut)
    if corners:
        corner_rng, _ = rngs(salt=7919)
        await overflow_tile(dut, info, dut._log.info)
        await overflow_each_pe(dut, info, corner_rng, dut._log.info,
                               env_int("NMFORGE_SWEEP_BEATS", MAX_SWEEP_BEATS))
        await fp_tiles(dut, info, dut._log.info)
        await reset_mid_run(dut, info, corner_rng)
        await count_bad_groups_up(dut, info, corner_rng, dut._log.info,
                                  env_int("NMFORGE_COUNT_BEATS", COUNT_BEATS))
    act = StreamSource(dut, "act", dut.clk, random_pauses(prng, stall))
    weight = StreamSource(dut, "weight", dut.clk, random_pauses(prng, stall))
    result = StreamSink(dut, "result", dut.clk, random_pauses(prng, stall))
    monitors = [StreamMonitor(dut, name, dut.clk) for name in ("act", "weight", "result")]
    bad_count = CounterWatch(dut.bad_groups, model.cols * model.n * model.groups)  # per beat at most

    expected_overflow = overflow_undefined = False
    expected_bad = 0
    timings = []
    gemms = []
    for number in range(gemm_count):
        fixed = tuple(int(x) for x in shape.split("x")) if shape else None
        if gemm_file:
            given = np.load(gemm_file)
            ops = Operands(*(given[key].astype(np.int64) for key in ("a", "values", "indices")))
        else:
            ops = model.random_gemm(rng, fixed, extreme=number % 2 == 1)
        c, overflowed = model.kind.golden(ops)
        if gemm_file and "c" in given:
            c = given["c"].astype(np.int64)  # the RTL is checked against the caller's product itself
        count = corrupt or (2 * len(model.malformations()) + model.cols  # every column's decoder
                            if corners and number == gemm_count - 1 else 0)
        injected, spoiled = model.corrupt(rng, ops, count) if count and not model.dense else (0, set())
        if spoiled:
            overflowed = unspoiled_overflow(model, ops, spoiled)
        described = model.kind.describe() + (f", {injected} malformed groups" if injected else "")
        gemms.append((number, ops, c, overflowed, injected, spoiled, described,
                      list(model.beats(ops)), list(model.tiles(c)), "random"))
    if corners:  # one-beat tiles back to back: consumer ready, then stalled
        ops = model.random_gemm(rng, (2 * model.rows, None, 4 * model.cols))
        c, overflowed = model.kind.golden(ops)
        gemms.append((gemm_count, ops, c, overflowed, 0, set(),
                      model.kind.describe() + ", shortest tiles back to back",
                      list(model.beats(ops)), list(model.tiles(c)), "burst"))
    if corners and model.runtime:  # each pattern's malformations in every column, after the
        sweep_rng, _ = rngs(salt=104729)  # GEMMs above, from a stream of their own
        for name in model.kind.names:
            ops = model.sweep_gemm(sweep_rng, name)
            c, _ = model.kind.golden(ops)
            injected, spoiled = model.corrupt_sweep(sweep_rng, ops)
            gemms.append((len(gemms), ops, c, unspoiled_overflow(model, ops, spoiled), injected, spoiled,
                          model.kind.describe() + f", {injected} malformed groups (every kind, every column)",
                          list(model.beats(ops)), list(model.tiles(c)), "sweep"))
    if corners:  # the output queue full with a PE holding its result, every entry written
        queue_rng, _ = rngs(salt=15485863)  # QUEUE_WRITES times: a stream of its own, as the sweep
        tiles = QUEUE_WRITES * (info["result_depth"] + 1)
        ops = model.random_gemm(queue_rng, (2 * model.rows, None, -(-tiles // 2) * model.cols))
        c, overflowed = model.kind.golden(ops)
        gemms.append((len(gemms), ops, c, overflowed, 0, set(),
                      model.kind.describe() + ", shortest tiles filling the output queue",
                      list(model.beats(ops)), list(model.tiles(c)), "queue"))
    if corners and hasattr(model.kind, "rounding_gemms"):  # no random draws
        for what, ops in model.kind.rounding_gemms(model.rows, model.cols):
            c, overflowed = model.kind.golden(ops)
            gemms.append((len(gemms), ops, c, overflowed, 0, set(), f"{model.kind.describe()}, {what}",
                          list(model.beats(ops)), list(model.tiles(c)), "rounding"))

    def send(beats):
        for act_beat, weight_beat in beats:
            act.send_nowait(act_beat)
            weight.send_nowait(weight_beat)

    async def check_flags(after):
        await ClockCycles(dut.clk, 4)  # sticky flags settle two cycles after the last accumulation
        flag = bool(dut.overflow.value)  # columns spoiled by malformed metadata may raise it
        assert flag == expected_overflow or (flag and overflow_undefined), \
            f"overflow flag {int(flag)} after {after}, golden says {expected_overflow}"
        assert bool(dut.meta_error.value) == (expected_bad > 0), "meta_error flag disagrees with injected groups"
        assert not bad_count.violations, \
            f"bad_groups stepped (cycle, from, to) {bad_count.violations[:3]} by {after}: it may only " \
            f"grow, by at most {bad_count.max_step} a beat"
        assert int(dut.bad_groups.value) == expected_bad, \
            f"bad_groups counted {int(dut.bad_groups.value)} after {after}, injected {expected_bad}"

    def set_pauses(stalled):
        """`stalled` cycles: full speed in and out, the consumer then stalled that long, then
        draining one beat in four (so the output queue is full again and again with no result
        waiting in a PE) and then at full speed; None: random stalls."""
        burst = stalled is not None
        for source in (act, weight):
            source.set_pause_generator(never_pause() if burst else random_pauses(prng, stall))
        result.set_pause_generator(
            itertools.chain([False] * (model.latency + 2), [True] * stalled,
                            [False, True, True, True] * (model.latency + 8),
                            never_pause()) if burst else random_pauses(prng, stall))

    overlap_start = monitors[0].cycle
    if overlap:
        for gemm in gemms:
            send(gemm[7])
    for number, ops, c, overflowed, injected, spoiled, described, beats, tiles, role in gemms:
        expected_overflow |= overflowed
        overflow_undefined |= bool(spoiled)
        expected_bad += injected * (ops.a.shape[0] // model.rows)  # re-streamed per row tile
        start_cycle = monitors[0].cycle
        tile_beats = len(beats) // len(tiles) if not overlap else max(len(g[7]) for g in gemms)
        # consumer stalls: the burst's outlasts the queue when it is shallow, the queue GEMM's
        # fills it whatever its depth, and one more tile's result waits in the PEs
        stalled = None if overlap else {
            "burst": 3 * model.latency + 8,
            "queue": model.latency + (info["result_depth"] + 2) * tile_beats + 8}.get(role)
        if not overlap:
            if stalled is not None:
                set_pauses(stalled)
            send(beats)
        bound = watchdog_bound(model.latency, tile_beats, 0 if stalled is not None else stall) + \
            (stalled or 0)
        await result.wait_beats(len(tiles), bound, f"GEMM {number}'s {len(tiles)} output tiles")
        if stalled is not None:
            set_pauses(None)
        got_tiles = [result.queue.popleft() for _ in tiles]
        # Results computed from malformed metadata are flagged, not checked: only the columns
        # the malformed groups spoil go unchecked.
        for ((i, j), want), got_bits in zip(tiles, got_tiles):
            got = np.array(unpack(model.result_layout, got_bits))
            keep = [k for k in range(want.shape[1]) if j + k not in spoiled]
            if keep:
                assert np.array_equal(got[:, keep], want[:, keep]), (
                    f"GEMM {number} {ops.a.shape[0]}x{ops.a.shape[1]}x{ops.values.shape[1]} "
                    f"({described}): output tile at row {i} col {j} differs\n"
                    f"got\n{got}\nwant\n{want}" + (f"\n(columns {sorted(spoiled)} unchecked)" if spoiled else ""))
        end_cycle = monitors[2].beats[-1][0]
        timing = {"shape": [ops.a.shape[0], ops.a.shape[1], ops.values.shape[1]], "beats": len(beats),
                  "tiles": len(tiles)}
        if ops.pattern is not None:
            timing["pattern"] = ops.pattern
        if role != "random":
            timing[role] = True  # a corner GEMM, after the random ones
        if not overlap:
            timing["cycles"] = end_cycle - start_cycle
        timings.append(timing)
        if not overlap:
            await check_flags(f"GEMM {number}")
    if overlap:
        total_cycles = monitors[2].beats[-1][0] - overlap_start
        await check_flags(f"{len(gemms)} GEMMs back to back")
    await ClockCycles(dut.clk, 2 * model.latency + 8)  # nothing lost was re-sent, nothing duplicated
    assert result.count() == 0, f"{result.count()} result beats more than the GEMMs' tiles arrived"

    for monitor in monitors:
        assert not monitor.protocol_errors, monitor.protocol_errors[:3]
    if stall == 0 and not corrupt:
        # With no stalls the first tile's result must appear exactly `latency` cycles after its last beat.
        act_cycles = [cycle for cycle, _ in monitors[0].beats]
        groups_per_tile = timings[0]["beats"] // timings[0]["tiles"]
        first_result = monitors[2].beats[0][0]
        assert first_result - act_cycles[groups_per_tile - 1] == model.latency, \
            f"latency {first_result - act_cycles[groups_per_tile - 1]} != manifest {model.latency}"
    if os.environ.get("NMFORGE_RESULT_JSON"):
        with open(os.environ["NMFORGE_RESULT_JSON"], "w") as f:
            json.dump({"gemms": timings} | ({"total_cycles": total_cycles} if overlap else {}), f)
