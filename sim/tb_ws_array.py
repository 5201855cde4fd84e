"""Regression of a weight-stationary array (rtl.ws_array; `array.dataflow = "weight_stationary"`).

NMFORGE_GEMMS random GEMMs (sim.kinds operands, every other one at the extremes) of up to two
column panels and K a multiple of the K-block (R*M), under random stalls on all three streams
(NMFORGE_STALL): per column panel and K-block one weight tile, then every activation row's beat,
the first one marked `first`. Each beat's `psum` is the running partial sum golden gives for
that row (the first K-block's: random over the whole accumulator range, so saturation and wrap
happen), and each result beat is checked bit for bit against golden's running sum after the
K-block's groups, added one group at a time in K order under the overflow policy
(golden.gemm.POLICIES) with the sticky `overflow` flag. Kind "fp" (exact accumulation): the
partial sums are golden.fp_mac records (a fixed-point value of acc_bits bits, which wraps and
sets `bound`, and the special classes), the first K-block's random over the whole range with
a few classes set; every result beat's `psum` must equal golden's record and its `value` the
record rounded (golden.fp_mac.exact_result); `overflow` must follow the flags of the beats
marked `final` (the last K-block's). Kind "mx": records of the current block's exact sum and
the FP32 sum of the blocks before; beats carry the row's scale and `block_last`, tiles the
columns' scales; K a multiple of the 32-element block. Run-time designs: one GEMM per pattern
of the table (at least), PE row r holding beat r of the K-block and `data[r]` its activation
window (golden.nm.act_windows), the running sum updated per beat. NMFORGE_CORRUPT malformed (group,
column) metadata groups per GEMM (sim.array_model.corrupt_groups / corrupt_bitmaps): the columns
they spoil go unchecked, `meta_error` must rise and `bad_groups` count each one once per tile
use. Every wait has a watchdog (harness.watchdog_bound)."""
import math

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from ..golden.dot import requantize
from ..golden.fp_mac import (SPECIAL_CLASSES, exact_beat_sums, exact_result, fp32_beat_sums,
                             fp32_bits)
from ..golden.fp_mac import _add as fp32_add
from ..golden.mx import SCALE_BIAS, SCALE_NAN
from ..golden.gemm import POLICIES, runtime_beat_sums, sparse_group_sums
from ..golden.ints import int_range
from ..golden.nm import act_windows, beat_span, kept_pairs, parse_runtime_pattern
from ..golden import posit as P
from ..golden.posit_mac import quire_lsb_exp, quire_products
from ..golden.bitserial import bitserial_beat_values
from ..golden.scalable import sparse_scalable_group_sums
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
        if ops.w_side is not None:     # mx, mpgemm: the K-block's last group's side
            column["side"] = int(ops.w_side[(kb + 1) * rows - 1, c])
        out.append(column)
    return out


class IntPartials:
    """Integer partial sums: int64 arrays of acc_width-bit values under the overflow policy; a
    sum leaving the range raises the sticky flag whichever K-block it is in."""

    def __init__(self, info, kind):
        p = info["parameters"]
        self.n, self.m, self.runtime = p["n"], p["m"], bool(p.get("runtime"))
        self.width, self.policy = p["acc_width"], POLICIES[p["overflow"]]
        self.lo, self.hi = int_range(self.width)

    def zeros(self, shape):
        return np.zeros(shape, dtype=np.int64)

    def group_terms(self, ops):
        """(groups, rows, columns) exact sums of each K-group (run-time: each beat) of `ops`."""
        if self.runtime:
            return runtime_beat_sums(ops.a, ops.values, ops.indices,
                                     parse_runtime_pattern(ops.pattern, self.n, self.m), self.n)
        return sparse_group_sums(ops.a, ops.values, ops.indices, self.n, self.m)

    def start(self, rng, shape):
        return rng.integers(self.lo, self.hi + 1, shape)

    def add(self, before, term):
        """(the sums after adding a group's terms, where an exact sum left the range)."""
        exact = before + term
        return self.policy(exact, self.width), (exact < self.lo) | (exact > self.hi)

    def final_flags(self, sums):
        """Where the last K-block's sums raise the flag (integers: never; `add` says it)."""
        return np.zeros(sums.shape, dtype=bool)

    def payload(self, row):
        return row

    def snapshot(self, final):
        """What `check` needs besides the sums of a beat of the last K-block or not."""
        return None

    def check(self, got, want, keep, snapshot=None):
        """'' when the result beat `got` (unpacked) equals the sums `want` in columns `keep`."""
        got = np.array(got)
        return "" if np.array_equal(got[keep], want[keep]) else \
            f"got {got.tolist()}, want {want.tolist()}"


class ScalablePartials(IntPartials):
    """Kind "scalable": integer partial sums of golden.scalable's exact lane values (a weight
    word is its byte | mode << 8)."""

    def group_terms(self, ops):
        values = np.asarray(ops.values, dtype=np.int64)
        return sparse_scalable_group_sums(ops.a, values & 0xFF, values >> 8, ops.indices,
                                          self.n, self.m)


class BitserialPartials(IntPartials):
    """Kind "bitserial": integer partial sums of beat-space groups (golden.bitserial.plane_beats
    in blocks of R: a K-block is one weight bit-plane of R groups), each adding
    (-1)^msb * 2^plane * sum a * bit with the plane and msb of its tile."""

    def __init__(self, info, kind):
        super().__init__(info, kind)
        self.kind = kind

    def group_terms(self, ops):
        return bitserial_beat_values(ops.a, ops.values, ops.indices, *self.kind.planes(ops),
                                     self.n, self.m)[0]


class FpPartials:
    """Kind "fp", exact accumulation: records (golden.fp_mac.exact_beat_sums: an exact
    fixed-point value of acc_bits bits, `bound` and the special classes) as numpy structured
    arrays; the flag only from rounding the last K-block's sums (golden.fp_mac.exact_result)."""

    CLASS_RATE = 0.02    # share of random starting sums with a special class set
    FLAGS = ("bound", *SPECIAL_CLASSES)

    def __init__(self, info, kind):
        self.kind, self.n, self.m = kind, info["parameters"]["n"], info["parameters"]["m"]
        self.bits = info["pe"]["acc_bits"]
        self.formats = (kind.fa, kind.fb)
        self.lsb = kind.fa.lsb_exp + kind.fb.lsb_exp
        self.dtype = np.dtype([("value", object)] + [(name, bool) for name in self.FLAGS])

    def zeros(self, shape):
        out = np.zeros(shape, dtype=self.dtype)
        out["value"] = 0
        return out

    def group_terms(self, ops):
        """(groups, rows, columns) records of each K-group's N kept (activation, weight) pairs."""
        acts, weights = kept_pairs(ops.a, ops.values, ops.indices, self.n, self.m)
        fa, fb = self.formats
        records = exact_beat_sums(fa, acts, fb, weights)                 # (rows, cols, G)
        out = self.zeros(acts.shape[:-1])
        for name, value in records.items():
            out[name] = value
        return out.transpose(2, 0, 1)

    def start(self, rng, shape):
        """Random records: 45 % zero, 5 % at an end of the range (a group of the same sign
        wraps it: `bound`), the others of random bit length up to acc_bits (so the rounding
        meets every exponent), a few classes set."""
        out = self.zeros(shape)
        lo, hi = -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1   # may exceed int64

        def bits(count):
            return int.from_bytes(rng.bytes(count // 8 + 1), "little") & ((1 << count) - 1)
        lengths = rng.integers(0, self.bits, shape)
        draws = rng.random(shape)
        out["value"] = np.array([
            0 if d < 0.45 else (lo if d < 0.475 else hi) if d < 0.5 else   # the range's ends:
            int(rng.choice([-1, 1])) * bits(int(b))                         # the next group wraps
            for d, b in zip(draws.ravel(), lengths.ravel())], dtype=object).reshape(shape)
        for name in self.FLAGS:
            out[name] = rng.random(shape) < self.CLASS_RATE
        return out

    def add(self, before, term):
        half = 1 << (self.bits - 1)
        exact = before["value"] + term["value"]
        after = before.copy()
        after["value"] = (exact + half) % (2 * half) - half
        after["bound"] |= after["value"] != exact
        for name in SPECIAL_CLASSES:
            after[name] |= term[name]
        return after, np.zeros(before.shape, dtype=bool)

    def rounded(self, record):
        """(FP32 bits, flag) of one record."""
        return exact_result(int(record["value"]), self.lsb,
                            **{name: bool(record[name]) for name in self.FLAGS})

    def final_flags(self, sums):
        flags = np.zeros(sums.shape, dtype=bool)
        for at in np.ndindex(sums.shape):
            flags[at] = self.rounded(sums[at])[1]
        return flags

    def payload(self, row):
        return [{name: int(r[name]) for name in self.dtype.names} for r in row]

    def snapshot(self, final):
        return None

    def expected_value(self, record, snapshot, c):
        """The `value` a result beat must carry for `record` in column c (None: unchecked)."""
        return self.rounded(record)[0]

    def check(self, got, want, keep, snapshot=None):
        problems = []
        for c in keep:
            record = {name: int(v) for name, v in got["psum"][c].items()}
            wanted = self.payload([want[c]])[0]
            value = self.expected_value(want[c], snapshot, c)
            if record != wanted:
                problems.append(f"column {c}: sum {record}, want {wanted}")
            elif value is not None and got["value"][c] != value:
                problems.append(f"column {c}: value {got['value'][c]:#x}, want {value:#x}")
        return "; ".join(problems)


class Fp32Partials(FpPartials):
    """Kind "fp", FP32 accumulation: records of the FP32 sum so far and its flag; each K-group
    adds its beat sum (golden.fp_mac.fp32_beat_sums: the pairwise tree of the FP32 products) in
    one RNE addition, K order from the beat's `psum` (golden.fp_mac.fp_mac_fp32 with one lane
    from +0.0). The value is the sum; the flag counts on the last K-block."""

    SUMS = np.array([0x00000000, 0x80000000, 0x3F800000, 0xC0400000, 0x7F7FFFFF, 0xFF7FFFFF,
                     0x00000001, 0x7F800000, 0xFF800000, 0x7FC00000], dtype=np.uint32)

    def __init__(self, info, kind):
        self.kind, self.n, self.m = kind, info["parameters"]["n"], info["parameters"]["m"]
        self.dtype = np.dtype([("bits", np.uint32), ("flag", bool)])

    def zeros(self, shape):
        return np.zeros(shape, dtype=self.dtype)

    def group_terms(self, ops):
        acts, weights = kept_pairs(ops.a, ops.values, ops.indices, self.n, self.m)
        sums, flags = fp32_beat_sums(self.kind.fa, acts, self.kind.fb, weights)
        out = self.zeros(sums.shape)
        out["bits"], out["flag"] = fp32_bits(sums), flags
        return out.transpose(2, 0, 1)

    def start(self, rng, shape):
        """Random sums: a quarter the special and boundary values, the others any finite
        FP32 value; a few flags."""
        out = self.zeros(shape)
        finite = (rng.integers(0, 0xFF000000, shape, endpoint=True) & 0x7F7FFFFF).astype(
            np.uint32) | (rng.integers(0, 2, shape).astype(np.uint32) << 31)
        out["bits"] = np.where(rng.random(shape) < 0.25, rng.choice(self.SUMS, shape), finite)
        out["flag"] = rng.random(shape) < 0.02
        return out

    def add(self, before, term):
        total, flag = fp32_add(before["bits"].view(np.float32), term["bits"].view(np.float32))
        after = self.zeros(before.shape)
        after["bits"], after["flag"] = fp32_bits(total), before["flag"] | term["flag"] | flag
        return after, np.zeros(before.shape, dtype=bool)

    def rounded(self, record):
        return int(record["bits"]), bool(record["flag"])


class MxPartials(FpPartials):
    """Kind "mx": records of the current scale block's exact sum (`block`: as FpPartials, of
    block_acc_bits) and `sum`, the FP32 sum of the blocks before (-0.0 until `started`) with its
    sticky `flag`; a K-block that ends a 32-element block closes it (`close`: rounded with the
    scales as golden.mx.mx_block_dot / mx_block_flags, then added in FP32 RNE)."""

    SUMS = np.array([0x00000000, 0x80000000, 0x3F800000, 0xC0400000, 0x7F7FFFFF, 0xFF7FFFFF,
                     0x00000001, 0x7F800000, 0xFF800000, 0x7FC00000], dtype=np.uint32)

    def __init__(self, info, kind):
        self.kind, self.n, self.m = kind, info["parameters"]["n"], info["parameters"]["m"]
        self.block_size = kind.block_size
        self.bits = info["pe"]["block_acc_bits"]
        self.formats = (kind.fmt, kind.fmt)
        self.lsb = 2 * kind.fmt.lsb_exp
        self.dtype = np.dtype([("value", object)] + [(name, bool) for name in self.FLAGS]
                              + [("sum", np.uint32), ("flag", bool), ("started", bool)])

    def start(self, rng, shape):
        out = super().start(rng, shape)
        out["sum"] = np.where(rng.random(shape) < 0.5, rng.choice(self.SUMS, shape),
                              rng.integers(0, 1 << 31, shape).astype(np.uint32) & 0x7F7FFFFF
                              | (rng.integers(0, 2, shape).astype(np.uint32) << 31))
        out["flag"] = rng.random(shape) < self.CLASS_RATE
        out["started"] = rng.random(shape) < 0.7
        return out

    def close(self, sums, ops, g, columns):
        """The records after their block closes, with the scales of group g (rows; `columns`)."""
        a_scale, w_scale = ops.a_side[:, g], ops.w_side[g, columns]
        out = sums.copy()
        for at in np.ndindex(sums.shape):
            r = sums[at]
            nan_scale = a_scale[at[0]] == SCALE_NAN or w_scale[at[1]] == SCALE_NAN
            classes = {name: bool(r[name]) for name in self.FLAGS}
            classes["nan"] |= nan_scale
            bits, flag = exact_result(int(r["value"]), self.lsb + int(a_scale[at[0]])
                                      + int(w_scale[at[1]]) - 2 * SCALE_BIAS, **classes)
            before = np.uint32(r["sum"] if r["started"] else 0x80000000).view(np.float32)
            total, add_flag = fp32_add(np.array([before]), np.array([bits], np.uint32)
                                       .view(np.float32))
            out[at] = (0, False, False, False, False, False, int(fp32_bits(total)[0]),
                       bool(r["flag"]) | flag | bool(add_flag[0]), True)
        return out

    def final_flags(self, sums):
        return sums["flag"].copy()

    def check(self, got, want, keep, snapshot=None):
        problems = []
        for c in keep:
            record = {name: int(v) for name, v in got["psum"][c]["block"].items()}
            record |= {name: int(got["psum"][c][name]) for name in ("sum", "flag", "started")}
            wanted = self.payload([want[c]])[0]
            wanted = {name: v for name, v in wanted["block"].items()} | \
                {name: wanted[name] for name in ("sum", "flag", "started")}
            if record != wanted:
                problems.append(f"column {c}: record {record}, want {wanted}")
            elif got["value"][c] != int(want[c]["sum"]):
                problems.append(f"column {c}: value {got['value'][c]:#010x}, want "
                                f"{int(want[c]['sum']):#010x}")
        return "; ".join(problems)

    def payload(self, row):
        return [{"block": {name: int(r[name]) for name in ("value", *self.FLAGS)},
                 "sum": int(r["sum"]), "flag": int(r["flag"]), "started": int(r["started"])}
                for r in row]


class PositPartials(FpPartials):
    """Kind "posit": quire records (golden.posit_mac: exact products in quire units, `nar`, and
    `bound` once a partial sum reaches |S| >= 2^(Q-1); the hardware's quire wraps), rounded once
    to the posit format (NaR when `nar` or `bound`; the flag is `bound`)."""

    FLAGS = ("nar", "bound")

    def __init__(self, info, kind):
        self.kind, self.n, self.m = kind, info["parameters"]["n"], info["parameters"]["m"]
        self.fmt, self.bits = kind.fmt, kind.quire_bits
        self.dtype = np.dtype([("value", object), ("nar", bool), ("bound", bool)])

    def group_terms(self, ops):
        acts, weights = kept_pairs(ops.a, ops.values, ops.indices, self.n, self.m)
        products, nar = quire_products(self.fmt, acts, weights)     # (rows, cols, G, N)
        out = self.zeros(products.shape[:-1])
        out["value"] = products.sum(axis=-1)
        out["nar"] = nar.any(axis=-1)
        return out.transpose(2, 0, 1)

    def add(self, before, term):
        half = 1 << (self.bits - 1)
        exact = before["value"] + term["value"]
        after = before.copy()
        after["value"] = (exact + half) % (2 * half) - half
        after["bound"] |= (exact >= half) | (exact <= -half)
        after["nar"] |= term["nar"]
        return after, np.zeros(before.shape, dtype=bool)

    def rounded(self, record):
        f = self.fmt
        if record["nar"] or record["bound"]:
            return f.nar, bool(record["bound"])
        return int(P.round_exact(f.n, f.es, int(record["value"]), quire_lsb_exp(f))), False


class MpgemmPartials(FpPartials):
    """Kind "mpgemm": records of the current quantization group's sums (s = sum w*a, t = sum a;
    zero at a group's start), the accumulator of the groups before (acc_bits, wrapping) and its
    flag; a K-block that ends a group closes it with the column's scale and zero point, and
    each beat's value is acc requantized with the column's mult and shift
    (golden.dot.mpgemm_gemm's order; the flag adds the output's saturation)."""

    def __init__(self, info, kind):
        pe = info["pe"]
        self.kind, self.n, self.m = kind, info["parameters"]["n"], info["parameters"]["m"]
        self.block_size, self.bits, self.out = kind.group_size, pe["acc_bits"], kind.out_width
        self.dtype = np.dtype([("s", np.int64), ("t", np.int64), ("acc", np.int64),
                               ("flag", bool)])
        self.mult = self.shift = None

    def zeros(self, shape):
        return np.zeros(shape, dtype=self.dtype)

    def group_terms(self, ops):
        acts, weights = kept_pairs(ops.a, ops.values, ops.indices, self.n, self.m)
        out = self.zeros(acts.shape[:-1])
        out["s"], out["t"] = (acts * weights).sum(axis=-1), acts.sum(axis=-1)
        return out.transpose(2, 0, 1)

    def start(self, rng, shape):
        """s = t = 0 (a K-block 0 starts a group); acc over its whole range, a few flags."""
        out = self.zeros(shape)
        lo, hi = int_range(self.bits)
        out["acc"] = rng.integers(lo, hi, shape, endpoint=True)
        out["flag"] = rng.random(shape) < 0.02
        return out

    def add(self, before, term):
        after = before.copy()
        after["s"] += term["s"]
        after["t"] += term["t"]
        return after, np.zeros(before.shape, dtype=bool)

    def close(self, sums, ops, g, columns):
        sides = [unpack(self.kind.side, int(x)) for x in ops.w_side[g, columns]]
        scale = np.array([f["scale"] for f in sides], dtype=object)
        zero = np.array([f["zero"] for f in sides], dtype=object)
        self.mult = np.array([f["mult"] for f in sides], dtype=np.int64)
        self.shift = np.array([f["shift"] for f in sides], dtype=np.int64)
        exact = sums["acc"].astype(object) + scale * (sums["s"].astype(object)
                                                      - zero * sums["t"].astype(object))
        half = 1 << (self.bits - 1)
        out = self.zeros(sums.shape)
        out["acc"] = ((exact + half) % (2 * half) - half).astype(np.int64)
        out["flag"] = sums["flag"] | ((exact >= half) | (exact < -half)).astype(bool)
        return out

    def requantized(self, record, mult, shift):
        """(y, flag) of a record's acc: golden.dot.requantize, flagged when it saturates."""
        acc = np.array([record["acc"]])
        y = int(requantize(acc, int(mult), int(shift), self.out)[0])
        return y, bool(record["flag"]) or int(requantize(acc, int(mult), int(shift), 63)[0]) != y

    def final_flags(self, sums):
        flags = np.zeros(sums.shape, dtype=bool)
        for i, c in np.ndindex(sums.shape):
            flags[i, c] = self.requantized(sums[i, c], self.mult[c], self.shift[c])[1]
        return flags

    def snapshot(self, final):
        """The last K-block's mult and shift per column (its value is the GEMM's output)."""
        return (self.mult.copy(), self.shift.copy()) if final else None

    def expected_value(self, record, snapshot, c):
        if snapshot is None:    # other K-blocks requantize with another tile's junk mult
            return None
        return self.requantized(record, snapshot[0][c], snapshot[1][c])[0] & \
            ((1 << self.out) - 1)


PARTIALS = {"int": IntPartials, "fp": FpPartials, "fp32": Fp32Partials, "mx": MxPartials,
            "scalable": ScalablePartials, "posit": PositPartials, "mpgemm": MpgemmPartials,
            "bitserial": BitserialPartials}


@cocotb.test()
async def ws_regression(dut):
    info = manifest()
    p = info["parameters"]
    rows, cols, n, m = p["rows"], p["cols"], p["n"], p["m"]
    kind = kind_model(info)
    fp32 = info["pe"].get("accumulate") == "fp32"
    partials = PARTIALS["fp32" if fp32 else p["pe_kind"]](info, kind)
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
        k = (block if runtime else math.lcm(block, kind.k_multiple)) * int(rng.integers(1, 4))
        panels = int(rng.integers(1, 3))
        ops = kind.random_gemm(rng, (mdim, k, panels * cols), extreme=number % 2 == 1)
        k = ops.a.shape[1] if not runtime else k     # bitserial: K in beat space (K * planes)
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
        sums = partials.zeros((steps, mdim, ops.values.shape[1]))
        if runtime:
            windows = act_windows(ops.a, parse_runtime_pattern(ops.pattern, n, m), n, m)
        if keep:
            sums[:, :, keep] = partials.group_terms(column_subset(ops, keep))
        running = partials.start(rng, (mdim, ops.values.shape[1]))
        expected = []
        for j in range(panels):
            span_cols = range(j * cols, (j + 1) * cols)
            checked = [c for c in range(cols) if j * cols + c not in spoiled]
            for kb in range(k // block):
                weight.send_nowait(pack(weight_layout, tile(ops, kb, span_cols, rows, n, m,
                                                            bitmap, id_bits)))
                before = running[:, j * cols:(j + 1) * cols].copy()
                after = before.copy()
                for g in range(kb * rows, (kb + 1) * rows):
                    after, overflowed = partials.add(after, sums[g][:, j * cols:(j + 1) * cols])
                    expected_overflow |= bool(overflowed[:, checked].any())
                closing = getattr(partials, "block_size", None)   # mx, mpgemm: K per block
                if closing:   # the K-block's last group's sides; does a block end here?
                    g, columns = (kb + 1) * rows - 1, slice(j * cols, (j + 1) * cols)
                    block_last = int((kb + 1) * block % closing == 0)
                    if block_last:
                        after = partials.close(after, ops, g, columns)
                final = kb == k // block - 1
                if final:
                    expected_overflow |= bool(partials.final_flags(after)[:, checked].any())
                running[:, j * cols:(j + 1) * cols] = after
                for i in range(mdim):
                    data = (windows[i, kb * rows:(kb + 1) * rows] if runtime
                            else ops.a[i, kb * block:(kb + 1) * block].reshape(rows, m))
                    beat = {"data": data, "psum": partials.payload(before[i]), "first": int(i == 0)}
                    if "final" in act_layout["fields"]:
                        beat["final"] = int(final)
                    if closing:
                        beat["block_last"] = block_last
                    if ops.a_side is not None:
                        beat["side"] = int(ops.a_side[i, g])
                    act.send_nowait(pack(act_layout, beat))
                    expected.append((j, kb, i, after[i], partials.snapshot(final)))
        bound = watchdog_bound(latency, rows + cols, stall)
        await result.wait_beats(len(expected), bound, f"GEMM {number}'s {len(expected)} beats")
        for j, kb, i, want, snapshot in expected:
            got = unpack(result_layout, result.queue.popleft())
            keep = [c for c in range(cols) if j * cols + c not in spoiled]
            problem = partials.check(got, want, keep, snapshot)
            assert not problem, (f"GEMM {number} {mdim}x{k}x{panels * cols}: column panel {j}, "
                                 f"K-block {kb}, row {i}: {problem}")
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
