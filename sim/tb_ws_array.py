"""Regression of a weight-stationary array (rtl.ws_array; `array.dataflow = "weight_stationary"`).

NMFORGE_GEMMS random GEMMs (sim.kinds operands, every other one at the extremes) of up to two
column panels and K a multiple of the K-block (R*M), under random stalls on all three streams
(NMFORGE_STALL): per column panel and K-block one weight tile, then every activation row's beat,
the first one marked `first`. Each beat's `psum` is the running partial sum golden gives for
that row (the first K-block's: random over the whole accumulator range, so saturation and wrap
happen), and each result beat is checked bit for bit against golden's running sum after the
K-block's groups, added one group at a time in K order under the overflow policy
(golden.gemm.POLICIES) with the sticky `overflow` flag. Run-time designs: one GEMM per pattern
of the table (at least), PE row r holding beat r of the K-block and `data[r]` its activation
window (golden.nm.act_windows), the running sum updated per beat. NMFORGE_CORRUPT malformed (group,
column) metadata groups per GEMM (sim.array_model.corrupt_groups / corrupt_bitmaps): the columns
they spoil go unchecked, `meta_error` must rise and `bad_groups` count each one once per tile
use. Every wait has a watchdog (harness.watchdog_bound)."""
import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from ..golden.gemm import POLICIES, runtime_beat_sums, sparse_group_sums
from ..golden.ints import int_range
from ..golden.nm import act_windows, beat_span, parse_runtime_pattern
from .array_model import bitmap_of, column_subset, corrupt_bitmaps, corrupt_groups, corrupt_runtime
from .harness import env_float, env_int, manifest, rngs, start, watchdog_bound
from .kinds import kind_model
from .payload import pack, unpack
from .streams import StreamSink, StreamSource, random_pauses


def tile(ops, kb, cols, rows, n, m, bitmap, id_bits=0):
    """Weight tile of K-block `kb` for GEMM columns `cols`: per column, the block's R groups
    (run-time: R beats, with each beat's pattern id at bit r*id_bits)."""
    lanes = slice(kb * rows * n, (kb + 1) * rows * n)
    out = []
    for c in cols:
        column = {"values": ops.values[lanes, c]}
        if ops.pattern_ids is not None:
            column["indices"] = ops.indices[lanes, c]
            column["pattern"] = sum(int(ops.pattern_ids[kb * rows + r, c]) << (r * id_bits)
                                    for r in range(rows))
        elif bitmap:
            column["bitmap"] = 0
            for b in range(rows):
                g = kb * rows + b
                flip = 0 if ops.bitmap_flip is None else int(ops.bitmap_flip[g, c])
                column["bitmap"] |= (bitmap_of(ops.indices[g * n:(g + 1) * n, c]) ^ flip) << (b * m)
        else:
            column["indices"] = ops.indices[lanes, c]
        out.append(column)
    return out


@cocotb.test()
async def ws_regression(dut):
    info = manifest()
    p = info["parameters"]
    rows, cols, n, m = p["rows"], p["cols"], p["n"], p["m"]
    kind = kind_model(info)
    acc_width, policy = p["acc_width"], POLICIES[p["overflow"]]
    lo, hi = int_range(acc_width)
    interfaces = info["interfaces"]
    act_layout, weight_layout = interfaces["act"]["payload"], interfaces["weight"]["payload"]
    result_layout = interfaces["result"]["payload"]
    metadata = weight_layout["element"]["fields"]
    bitmap = "bitmap" in metadata
    latency = info["latency_cycles"]
    rng, prng = rngs()
    stall = env_float("NMFORGE_STALL", 0.3)
    corrupt = env_int("NMFORGE_CORRUPT", 0)

    await start(dut)
    act = StreamSource(dut, "act", dut.clk, random_pauses(prng, stall))
    weight = StreamSource(dut, "weight", dut.clk, random_pauses(prng, stall))
    result = StreamSink(dut, "result", dut.clk, random_pauses(prng, stall))
    expected_overflow, overflow_undefined, expected_bad = False, False, 0
    runtime = bool(p.get("runtime"))
    id_bits = p.get("pattern_bits", 0)
    gemms = env_int("NMFORGE_GEMMS", 3)
    if runtime:   # every pattern of the table at least once
        gemms = max(gemms, len(kind.names))
    for number in range(gemms):
        if runtime:
            kind.next_pattern()
        span = beat_span(kind.pattern, n) if runtime else m   # K per PE row and beat
        block = rows * span
        mdim = int(rng.integers(1, 2 * rows + 1))
        k = block * int(rng.integers(1, 4))
        panels = int(rng.integers(1, 3))
        ops = kind.random_gemm(rng, (mdim, k, panels * cols), extreme=number % 2 == 1)
        spoiled = set()
        if corrupt and not p["dense"]:
            if runtime:
                injected, spoiled = corrupt_runtime(rng, ops, n, m, corrupt, cols)
            elif bitmap:
                bad, ops.bitmap_flip = corrupt_bitmaps(rng, ops.indices, n, m, corrupt, cols)
            else:
                bad, ops.indices = corrupt_groups(rng, ops.indices, n, m, corrupt,
                                                  ("repeat", "descend") if n >= 2 else (), cols)
            if not runtime:
                injected, spoiled = len(bad), {c for _, c in bad}
            expected_bad += injected        # each tile is taken into use once per GEMM
            overflow_undefined |= bool(spoiled)   # sums of malformed groups are unspecified
        # golden on the well-formed columns only; spoiled ones are not checked
        keep = [c for c in range(ops.values.shape[1]) if c not in spoiled]
        steps = k // (span if runtime else m)      # accumulator updates per row
        sums = np.zeros((steps, mdim, ops.values.shape[1]), dtype=np.int64)
        if runtime:
            windows = act_windows(ops.a, parse_runtime_pattern(ops.pattern, n, m), n, m)
        if keep:
            kept = column_subset(ops, keep)
            sums[:, :, keep] = (runtime_beat_sums(kept.a, kept.values, kept.indices,
                                                  parse_runtime_pattern(kept.pattern, n, m), n)
                                if runtime else
                                sparse_group_sums(kept.a, kept.values, kept.indices, n, m))
        running = rng.integers(lo, hi + 1, (mdim, ops.values.shape[1]))
        expected = []
        for j in range(panels):
            span_cols = range(j * cols, (j + 1) * cols)
            for kb in range(k // block):
                weight.send_nowait(pack(weight_layout, tile(ops, kb, span_cols, rows, n, m,
                                                            bitmap, id_bits)))
                before = running[:, j * cols:(j + 1) * cols].copy()
                after = before.copy()
                for g in range(kb * rows, (kb + 1) * rows):
                    exact = after + sums[g][:, j * cols:(j + 1) * cols]
                    overflowed = (exact < lo) | (exact > hi)
                    expected_overflow |= bool(overflowed[:, [c for c in range(cols)
                                                             if j * cols + c not in spoiled]].any())
                    after = policy(exact, acc_width)
                running[:, j * cols:(j + 1) * cols] = after
                for i in range(mdim):
                    data = (windows[i, kb * rows:(kb + 1) * rows] if runtime
                            else ops.a[i, kb * block:(kb + 1) * block].reshape(rows, m))
                    act.send_nowait(pack(act_layout, {"data": data, "psum": before[i],
                                                      "first": int(i == 0)}))
                    expected.append((j, kb, i, after[i]))
        bound = watchdog_bound(latency, rows + cols, stall)
        await result.wait_beats(len(expected), bound, f"GEMM {number}'s {len(expected)} beats")
        for j, kb, i, want in expected:
            got = np.array(unpack(result_layout, result.queue.popleft()))
            keep = [c for c in range(cols) if j * cols + c not in spoiled]
            assert np.array_equal(got[keep], want[keep]), (
                f"GEMM {number} {mdim}x{k}x{panels * cols}: column panel {j}, K-block {kb}, "
                f"row {i}: got {got.tolist()}, want {want.tolist()}")
        await ClockCycles(dut.clk, 4)
        assert overflow_undefined or int(dut.overflow.value) == int(expected_overflow), \
            f"overflow flag {int(dut.overflow.value)} after GEMM {number}, golden says {expected_overflow}"
        assert int(dut.bad_groups.value) == expected_bad, \
            f"bad_groups {int(dut.bad_groups.value)} after GEMM {number}, injected {expected_bad}"
        assert int(dut.meta_error.value) == int(expected_bad > 0)
        dut._log.info(f"GEMM {number}: {mdim}x{k}x{panels * cols}, {len(expected)} beats "
                      f"{kind.describe()}{f', {len(spoiled)} spoiled columns' if spoiled else ''}: ok")
    await ClockCycles(dut.clk, 2 * latency + 8)
    assert result.count() == 0, f"{result.count()} result beats more than were sent arrived"
