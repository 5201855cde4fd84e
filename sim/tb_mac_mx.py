"""MX MAC units (rtl.mac_mx.MxMac) alone, bit-exact against golden.mx.mx_mac.

The simulated top level (`build_bench`) holds several MxMac configurations side by side, each
with its ports prefixed by its name (`e4m3__a`, `e4m3__result`, ...), so one Verilator build
serves all six element formats; the manifest lists the instances with their parameters,
latency and port layouts. Every instance is driven from the same clock loop.

Tests (NMFORGE_TESTS, comma separated, default all):
  pairs  one-block tiles holding a single (activation, weight) code pair at a random beat and
         lane (every other position +0 x +0), with random scales among the corners (0, 1, 126,
         127, 128, 253, 254, 0xFF) and random codes: EVERY code pair of a format with at most
         4096 pairs (MXFP4, MXFP6), else every pair of corner codes (zeros, +-max, +-min
         subnormal, +-min normal, +-1, NaN, inf) plus NMFORGE_PAIRS random pairs (MXFP8,
         MXINT8). Back to back, no bubbles.
  tiles  NMFORGE_TILES random tiles of 1 .. 2L+2 blocks (L the slot count) with bubbles (valid
         low, junk codes, junk scales, junk `last`) at NMFORGE_STALL: random codes with some
         NaN/inf, corner codes, cancelling blocks, wide dynamic range, all-zero and all-max
         blocks; scales near 127, at the extremes 0 and 254, and NaN; about 1 tile in 16 ends
         mid-block (malformed: NaN and `overflow`).
Every published result (FP32 bits), its latency and its overflow pulse are checked.
"""
import os

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from ..golden import formats as F
from ..golden.mx import BLOCK_SIZE, MX_FORMATS, SCALE_NAN, mx_mac
from .harness import env_float, env_int, manifest, rngs, start
from .kinds import MxKind
from .mac_bench import run_bench as run_bench_module, write_bench
from .payload import pack

TESTS = ("pairs", "tiles")
EXHAUSTIVE_LIMIT = 4096
SCALE_CORNERS = np.array([0, 1, 126, 127, 128, 253, 254, SCALE_NAN])


def element(name):
    return F.get_format(MX_FORMATS[name])


def codes(fmt, rng, shape, special_rate=0.0):
    """Random codes; NaN/inf codes at `special_rate` (formats without them: all finite)."""
    return MxKind.codes(fmt, rng, shape, special_rate)


corner_codes = MxKind.corner_codes


def max_codes(fmt):
    """The codes of the largest magnitude (both signs)."""
    values = fmt.decode(fmt.codes())
    mag = np.abs(np.where(np.isfinite(values), values, 0))
    return np.flatnonzero(mag == mag.max()).astype(np.int64)


class Instance:
    """One MxMac of the bench: its ports on the dut, parameters, latency, packers."""

    def __init__(self, dut, name, info):
        self.name = name
        p = info["parameters"]
        self.n, self.m, self.format, self.lanes = p["n"], p["m"], p["format"], p["lanes"]
        self.fmt = element(self.format)
        self.per_block = BLOCK_SIZE // self.m
        self.latency = info["latency_cycles"]
        port = lambda suffix: getattr(dut, f"{info['prefix']}{suffix}")  # noqa: E731
        self.ports = {k: port(k) for k in ("a", "w", "valid", "last", "a_side", "w_side",
                                           "result", "result_valid", "overflow")}
        self.a_layout = info["interfaces"]["a"]["layout"]
        self.w_layout = info["interfaces"]["w"]["layout"]

    def pack(self, rows, layout):
        stride = layout["stride"]
        packed = [sum(int(v) << (i * stride) for i, v in enumerate(row)) for row in rows]
        assert packed[0] == pack(layout, [int(v) for v in rows[0]])
        return packed

    def golden(self, a, w, sa, sw):
        return mx_mac(self.format, a, w, sa, sw, self.m, self.lanes)


class Job:
    """One instance's cycle schedule (a, w, a_side, w_side, valid, last) and expected tiles."""

    def __init__(self, mac):
        self.mac, self.schedule, self.last_cycles, self.expected, self.tiles = mac, [], [], [], []

    def add_tile(self, a, w, sa, sw, rng, prng, stall):
        """a, w: (B, N) codes; sa, sw: (B,) scales per beat."""
        mac = self.mac
        pa, pw = mac.pack(a, mac.a_layout), mac.pack(w, mac.w_layout)
        for b in range(len(a)):
            while stall and prng.random() < stall:  # a bubble: junk everywhere
                ja = mac.pack(codes(mac.fmt, rng, (1, mac.n), 0.1), mac.a_layout)[0]
                jw = mac.pack(codes(mac.fmt, rng, (1, mac.n), 0.1), mac.w_layout)[0]
                self.schedule.append((ja, jw, int(rng.integers(256)), int(rng.integers(256)), 0,
                                      int(prng.random() < 0.5)))
            self.schedule.append((pa[b], pw[b], int(sa[b]), int(sw[b]), 1, int(b == len(a) - 1)))
        self.last_cycles.append(len(self.schedule) - 1)
        self.tiles.append((a, w, sa, sw))


async def drive_all(clk, jobs):
    """Drive every job's schedule from the same clock edge on; returns per job the results
    [(cycle, bits, overflow)] and the cycles where overflow rose without a result."""
    out = [([], []) for _ in jobs]
    length = max(len(job.schedule) + job.mac.latency + 2 for job in jobs)
    for cycle in range(length):
        await RisingEdge(clk)
        for job in jobs:
            p = job.mac.ports
            if cycle < len(job.schedule):
                a, w, sa, sw, valid, last = job.schedule[cycle]
                p["a"].value, p["w"].value, p["a_side"].value, p["w_side"].value = a, w, sa, sw
                p["valid"].value, p["last"].value = valid, last
            else:
                p["valid"].value = 0
        await ReadOnly()
        for job, (results, stray) in zip(jobs, out):
            p = job.mac.ports
            if p["result_valid"].value == 1:
                results.append((cycle, int(p["result"].value), int(p["overflow"].value)))
            elif p["overflow"].value == 1:
                stray.append(cycle)
    return out


def check(job, results, stray, what, dut):
    mac = job.mac
    assert not stray, f"{mac.name} {what}: overflow pulsed without a result at cycles {stray[:5]}"
    expected = [mac.golden(*tile) for tile in job.tiles]
    assert len(results) == len(expected), \
        f"{mac.name} {what}: {len(results)} results for {len(expected)} tiles"
    for t, ((cycle, got, flag), (bits, want_flag)) in enumerate(zip(results, expected)):
        if got != int(bits) or flag != int(want_flag):
            a, w, sa, sw = job.tiles[t]
            raise AssertionError(
                f"{mac.name} ({mac.format} {mac.n}:{mac.m}) {what}: tile {t}: result {got:#010x} "
                f"overflow {flag}, golden {int(bits):#010x} overflow {int(want_flag)}; "
                f"a {a.tolist()} w {w.tolist()} a_side {sa.tolist()} w_side {sw.tolist()}")
        assert cycle - job.last_cycles[t] == mac.latency, \
            f"{mac.name} {what}: tile {t}: latency {cycle - job.last_cycles[t]}, manifest {mac.latency}"
    flagged = sum(int(f) for _, f in expected)
    values = np.array([int(b) for b, _ in expected], dtype=np.uint32).view(np.float32)
    dut._log.info(f"{mac.name} ({mac.format} {mac.n}:{mac.m}, L={mac.lanes}): checked "
                  f"{len(expected)} {what}, {flagged} with overflow; results: "
                  f"{int(np.isnan(values).sum())} NaN, {int(np.isinf(values).sum())} inf, "
                  f"{int((values == 0).sum())} zero, {int((np.isfinite(values) & (values != 0)).sum())} "
                  f"finite non-zero ({int((np.abs(values) < 2.0 ** -126).sum() - (values == 0).sum())} "
                  f"subnormal)")


def instances(dut):
    info = manifest()
    chosen = os.environ.get("NMFORGE_INSTANCES")
    names = chosen.split(",") if chosen else list(info["instances"])
    return [Instance(dut, name, info["instances"][name]) for name in names]


def selected(test):
    return test in os.environ.get("NMFORGE_TESTS", ",".join(TESTS)).split(",")


@cocotb.test(skip=not selected("pairs"))
async def code_pairs(dut):
    macs = instances(dut)
    rng, prng = rngs()
    await start(dut)
    jobs, whats = [], []
    for mac in macs:
        fmt, n = mac.fmt, mac.n
        if fmt.num_codes ** 2 <= EXHAUSTIVE_LIMIT:
            pa, pb = (x.ravel() for x in np.meshgrid(np.arange(fmt.num_codes),
                                                     np.arange(fmt.num_codes), indexing="ij"))
            whats.append(f"all {len(pa)} code pairs")
        else:
            corners = corner_codes(fmt)
            pa, pb = (x.ravel() for x in np.meshgrid(corners, corners, indexing="ij"))
            count = env_int("NMFORGE_PAIRS", 1500)
            pa = np.concatenate([pa, codes(fmt, rng, count, 0.02)])
            pb = np.concatenate([pb, codes(fmt, rng, count, 0.02)])
            whats.append(f"{len(pa)} corner and random code pairs")
        job = Job(mac)
        for x, y in zip(pa, pb):
            a = np.zeros((mac.per_block, n), dtype=np.int64)
            w = np.zeros((mac.per_block, n), dtype=np.int64)
            beat, lane = int(rng.integers(mac.per_block)), int(rng.integers(n))
            a[beat, lane], w[beat, lane] = x, y
            scales = np.where(rng.random(2) < 0.5, rng.choice(SCALE_CORNERS, 2),
                              rng.integers(0, 255, 2))
            job.add_tile(a, w, np.full(mac.per_block, scales[0]), np.full(mac.per_block, scales[1]),
                         rng, prng, 0)
        jobs.append(job)
    outputs = await drive_all(dut.clk, jobs)
    for job, (results, stray), what in zip(jobs, outputs, whats):
        check(job, results, stray, f"one-pair blocks ({what})", dut)


def random_block(mac, rng):
    """(per_block, N) activation and weight codes of one block of a random flavour."""
    fmt, shape = mac.fmt, (mac.per_block, mac.n)
    flavour = int(rng.integers(0, 8))
    if flavour == 0:  # random codes with a NaN / inf now and then
        return codes(fmt, rng, shape, 0.01), codes(fmt, rng, shape, 0.01)
    if flavour == 1:  # corners, NaN / inf among them in one block of four
        corners = corner_codes(fmt)
        if rng.random() < 0.75:
            corners = corners[np.isfinite(fmt.decode(corners))]
        return rng.choice(corners, shape), rng.choice(corners, shape)
    if flavour == 2:  # all zeros (both signs)
        zeros = np.array([0, 1 << (fmt.width - 1)]) if fmt.kind != "int" else np.array([0])
        return rng.choice(zeros, shape), codes(fmt, rng, shape)
    if flavour == 3:  # every element at the maximum magnitude, random signs
        big = max_codes(fmt)
        return rng.choice(big, shape), rng.choice(big, shape)
    a, w = codes(fmt, rng, shape), codes(fmt, rng, shape)
    if flavour == 4:  # cancelling: the second half repeats the first half negated
        flat_a, flat_w = a.reshape(-1), w.reshape(-1)
        half = flat_a.size // 2
        flat_a[half:2 * half] = flat_a[:half]
        neg = fmt.encode(-fmt.decode(flat_w[:half]))
        flat_w[half:2 * half] = neg
        return flat_a.reshape(shape), flat_w.reshape(shape)
    if flavour == 5:  # wide dynamic range: a few huge products among tiny ones
        big = max_codes(fmt)
        huge = rng.random(shape) < 0.2
        return np.where(huge, rng.choice(big, shape), a), w
    return a, w  # plain random finite codes


def random_scales(rng):
    """A block's two scales: mostly near 127, sometimes the extremes 0 / 254, rarely NaN."""
    kind = rng.random()
    if kind < 0.55:
        return rng.integers(112, 143, 2)
    if kind < 0.85:
        return rng.choice(np.array([0, 1, 254, 253, 127]), 2)
    if kind < 0.95:
        return rng.integers(0, 255, 2)
    return np.array([SCALE_NAN, rng.integers(0, 256)])[rng.permutation(2)]


@cocotb.test(skip=not selected("tiles"))
async def random_tiles(dut):
    macs = instances(dut)
    rng, prng = rngs(1)
    stall = env_float("NMFORGE_STALL", 0.3)
    await start(dut)
    jobs = []
    for mac in macs:
        job = Job(mac)
        for _ in range(env_int("NMFORGE_TILES", 150)):
            blocks = int(rng.integers(1, 2 * mac.lanes + 3))
            parts = [random_block(mac, rng) for _ in range(blocks)]
            a = np.concatenate([p[0] for p in parts])
            w = np.concatenate([p[1] for p in parts])
            scales = np.array([random_scales(rng) for _ in range(blocks)])
            sa = np.repeat(scales[:, 0], mac.per_block)
            sw = np.repeat(scales[:, 1], mac.per_block)
            if rng.random() < 1 / 16:  # malformed: `last` mid-block
                cut = int(rng.integers(1, len(a)))
                if cut % mac.per_block == 0:
                    cut -= 1
                a, w, sa, sw = a[:cut], w[:cut], sa[:cut], sw[:cut]
            job.add_tile(a, w, sa, sw, rng, prng, stall)
        jobs.append(job)
    outputs = await drive_all(dut.clk, jobs)
    for job, (results, stray) in zip(jobs, outputs):
        check(job, results, stray, "random tiles", dut)


# ---------------------------------------------------------------------------------------------
# Building and running the bench


def build_bench(work_dir, configs, module="mx_mac_bench"):
    """Write `module`.v (MxMacs side by side, ports `<name>__<port>`) and `module`.json.

    `configs`: {name: MxMac keyword arguments (n, m, format)}. Returns (verilog, manifest)."""
    from ..rtl.mac_mx import MxMac
    macs = {}
    for name, kwargs in configs.items():
        mac = MxMac(**kwargs)
        macs[name] = (mac, {"parameters": {"n": mac.n, "m": mac.m, "format": mac.format,
                                           "lanes": mac.lanes}})
    return write_bench(work_dir, module, "mx_mac_bench", macs)


def run_bench(verilog_path, manifest_path, work_dir, *, tests=TESTS, instances=None, seed=1,
              options=None, log=print):
    """Run this testbench (`tests`, on `instances` or all) on a `build_bench` output; the
    Verilator build is cached per Verilog text under `work_dir`. `options` become NMFORGE_*
    variables. Returns sim.runner.SimResult."""
    return run_bench_module("nmforge.sim.tb_mac_mx", verilog_path, manifest_path, work_dir,
                            tests, instances, seed, options, log)
