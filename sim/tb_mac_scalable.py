"""Precision-scalable MAC units (rtl.mac_scalable.ScalableMac) alone, bit-exact against
golden.scalable (and, for INT16 composition, against golden.dot.int_dot on the 16-bit values).

The simulated top level (`ScalableMacBench`, built by `build_bench`) holds several ScalableMac
configurations side by side, each with its ports prefixed by its name (`dsp__a`, `dsp__result`,
...), so one Verilator build serves all of them. The manifest lists the instances with their
parameters, latency, port layouts (gen.manifest.describe_interfaces) and the tests that apply.

Tests (NMFORGE_TESTS, comma separated, default all; NMFORGE_INSTANCES picks instances):
  exhaustive  per mode int8, int4, int2: every lane sees all 65,536 (a, w) byte pairs, one per
              cycle, each lane in its own order; every beat is a one-beat tile, so each of the
              65,536 results (one per cycle, back to back) is checked, with its latency. In int4
              mode the byte pairs are every (low nibble pair, high nibble pair) combination, so
              each INT4 x INT4 product is met in both nibble positions; in int2 mode every INT2
              product in all four field positions. Records the measured beats per cycle in
              NMFORGE_RESULT_JSON when given.
  mixed       random multi-beat tiles, a random mode per lane and beat (all 8 codes), full-range
              and corner bytes, random bubbles (valid low with junk payload and junk `last`);
              every result, its latency, and the overflow pulse of every beat are checked.
  int16       INT16 dot products laid out by golden.scalable.int16_schedule, checked against the
              plain integer dot product of the 16-bit values.
"""
import json
import os
import pathlib

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from ..golden.dot import int_dot
from ..golden.ints import int_range
from ..golden.scalable import MODE_CODES, beat_sums, int16_schedule, lane_values, scalable_tile
from .harness import env_float, env_int, manifest, rngs, start
from .mac_bench import run_bench as run_bench_module, write_bench
from .payload import pack

PAIRS = 1 << 16
TESTS = ("exhaustive", "mixed", "int16")
CORNER_BYTES = [0x00, 0x80, 0x7F, 0xFF, 0x88, 0x77, 0xAA, 0x55, 0x08, 0x01]


class _Instance:
    """One ScalableMac of the bench: its ports on the dut, parameters, latency, packers."""

    def __init__(self, dut, name, info):
        self.name, self.p, self.latency = name, info["parameters"], info["latency_cycles"]
        self.n = self.p["n"]
        port = lambda suffix: getattr(dut, f"{info['prefix']}{suffix}")  # noqa: E731
        self.a, self.w, self.valid, self.last = port("a"), port("w"), port("valid"), port("last")
        self.result, self.result_valid, self.overflow = port("result"), port("result_valid"), port("overflow")
        self.a_layout = info["interfaces"]["a"]["layout"]
        self.w_layout = info["interfaces"]["w"]["layout"]
        fields = self.w_layout["element"]["fields"]
        self.bits_off, self.mode_off = fields["bits"]["offset"], fields["mode"]["offset"]

    def pack_a(self, rows):
        stride = self.a_layout["stride"]
        return [sum(int(v) << (i * stride) for i, v in enumerate(row)) for row in rows]

    def pack_w(self, w_rows, mode_rows):
        stride = self.w_layout["stride"]
        return [sum(((int(b) << self.bits_off) | (int(md) << self.mode_off)) << (i * stride)
                    for i, (b, md) in enumerate(zip(br, mr))) for br, mr in zip(w_rows, mode_rows)]

    def check_packers(self, a_row, w_row, mode_row):
        """The fast packers agree with sim.payload.pack on the manifest layouts."""
        assert self.pack_a([a_row])[0] == pack(self.a_layout, [int(v) for v in a_row])
        want = pack(self.w_layout, [{"bits": int(b), "mode": int(md)} for b, md in zip(w_row, mode_row)])
        assert self.pack_w([w_row], [mode_row])[0] == want



async def drive_all(clk, jobs):
    """Drive every instance's beats [(a_bits, w_bits, valid, last)] from the same clock edge on
    (one loop for all, so side-by-side instances cost one pass); return, per job, the results
    [(cycle, result)] and the cycles with an overflow pulse."""
    out = [([], []) for _ in jobs]
    length = max(len(beats) + mac.latency + 2 for mac, beats in jobs)
    for cycle in range(length):
        await RisingEdge(clk)
        for mac, beats in jobs:
            if cycle < len(beats):
                a_bits, w_bits, valid, last = beats[cycle]
                mac.a.value, mac.w.value, mac.valid.value, mac.last.value = a_bits, w_bits, valid, last
            elif cycle == len(beats):
                mac.valid.value = 0
        await ReadOnly()
        for (mac, _), (results, overflows) in zip(jobs, out):
            if mac.result_valid.value == 1:
                results.append((cycle, mac.result.value.to_signed()))
            if mac.overflow.value == 1:
                overflows.append(cycle)
    return out


def _instances(dut, test):
    """The bench instances to run `test` on (NMFORGE_INSTANCES and each instance's test list)."""
    info = manifest()
    wanted = os.environ.get("NMFORGE_INSTANCES")
    wanted = wanted.split(",") if wanted else list(info["instances"])
    return [_Instance(dut, name, info["instances"][name]) for name in wanted
            if test in info["instances"][name]["tests"]]


def _skip(test):
    return test not in os.environ.get("NMFORGE_TESTS", ",".join(TESTS)).split(",")


# ---------------------------------------------------------------------------------------------


async def _exhaustive(dut, macs, rng):
    pairs = np.arange(PAIRS, dtype=np.int64)
    measured = {mac.name: {"beats": PAIRS, "cycles": {}, "beats_per_cycle": {}} for mac in macs}
    orders = {}
    for mac in macs:
        assert mac.p["acc_width"] >= 18, "the exhaustive test needs an accumulator that holds any beat"
        # lane i visits every pair once, in its own order: a fixed permutation of the pair index
        orders[mac.name] = np.stack([rng.permutation(pairs) for _ in range(mac.n)], axis=1)  # (PAIRS, n)
    for mode in ("int8", "int4", "int2"):
        jobs, wants = [], []
        for mac in macs:
            order = orders[mac.name]
            a, w = order >> 8, order & 0xFF
            modes = np.full_like(a, MODE_CODES[mode])
            mac.check_packers(a[0], w[0], modes[0])
            wants.append((a, w, modes, beat_sums(modes, a, w, mac.p["int16"])))
            jobs.append((mac, list(zip(mac.pack_a(a), mac.pack_w(w, modes), [1] * PAIRS, [1] * PAIRS))))
        for mac, (a, w, modes, want), (results, overflows) in zip(macs, wants, await drive_all(dut.clk, jobs)):
            tag = f"{mac.name} {mode}"
            assert not overflows, f"{tag}: unexpected overflow pulses at cycles {overflows[:5]}"
            assert len(results) == PAIRS, f"{tag}: {len(results)} results for {PAIRS} beats"
            got = np.array([r for _, r in results], dtype=np.int64)
            got_cycles = np.array([c for c, _ in results])
            bad = np.nonzero(got != want)[0]
            if bad.size:
                t = int(bad[0])
                lanes = lane_values(modes[t], a[t], w[t], mac.p["int16"]).tolist()
                raise AssertionError(f"{tag}: {bad.size} wrong beats; first at beat {t}: a={a[t].tolist()} "
                                     f"w={w[t].tolist()} got {got[t]}, golden {want[t]} (lanes {lanes})")
            assert (got_cycles == np.arange(PAIRS) + mac.latency).all(), f"{tag}: latency is not {mac.latency}"
            cycles = int(got_cycles[-1] - got_cycles[0] + 1)
            measured[mac.name]["cycles"][mode] = cycles
            measured[mac.name]["beats_per_cycle"][mode] = PAIRS / cycles
    return measured


@cocotb.test(skip=_skip("exhaustive"))
async def exhaustive_subword_products(dut):
    rng, _ = rngs()
    await start(dut)
    measured = await _exhaustive(dut, _instances(dut, "exhaustive"), rng)
    result_json = os.environ.get("NMFORGE_RESULT_JSON")
    if result_json:
        pathlib.Path(result_json).write_text(json.dumps(measured, indent=2))


def _random_tile(rng, n, beats):
    modes = rng.integers(0, 8, (beats, n))
    if rng.random() < 0.3:  # one mode for the whole tile
        modes[:] = rng.integers(0, 8)
    a = rng.integers(0, 256, (beats, n))
    w = rng.integers(0, 256, (beats, n))
    if rng.random() < 0.3:  # corner bytes: extreme sub-words of every mode
        a = rng.choice(CORNER_BYTES, (beats, n))
        w = rng.choice(CORNER_BYTES, (beats, n))
    return modes, a, w


def _mixed_schedule(mac, rng, prng):
    p = mac.p
    bubble = env_float("NMFORGE_STALL", 0.25)
    acc_width, overflow, int16 = p["acc_width"], p["overflow"], p["int16"]
    lo, hi = int_range(acc_width)
    schedule, expected, pulse_cycles = [], [], []
    for _ in range(env_int("NMFORGE_TILES", 300)):
        beats = int(rng.integers(1, 13))
        modes, a, w = _random_tile(rng, mac.n, beats)
        mac.check_packers(a[0], w[0], modes[0])
        want, overflowed = scalable_tile(modes, a, w, acc_width, overflow, int16)
        sums = beat_sums(modes, a, w, int16)
        for b in range(beats):
            while prng.random() < bubble:
                junk = rng.integers(0, 256, (3, mac.n))
                schedule.append((mac.pack_a([junk[0]])[0], mac.pack_w([junk[1]], [junk[2] & 7])[0], 0,
                                 int(prng.random() < 0.5)))
            # this beat's overflow pulse: the accumulator before it is the tile prefix's result
            before = scalable_tile(modes[:b], a[:b], w[:b], acc_width, overflow, int16)[0] if b else 0
            if not lo <= before + int(sums[b]) <= hi:
                pulse_cycles.append(len(schedule) + mac.latency)
            schedule.append((mac.pack_a([a[b]])[0], mac.pack_w([w[b]], [modes[b]])[0], 1, int(b == beats - 1)))
        expected.append((len(schedule) - 1, want, overflowed))
    return schedule, (expected, pulse_cycles)


def _check_mixed(mac, expected, pulse_cycles, results, overflows):
    assert len(results) == len(expected), f"{mac.name}: {len(results)} results for {len(expected)} tiles"
    for tile, ((cycle, got), (last_cycle, want, _)) in enumerate(zip(results, expected)):
        assert got == want, f"{mac.name} tile {tile}: result {got}, golden {want}"
        assert cycle - last_cycle == mac.latency, \
            f"{mac.name} tile {tile}: latency {cycle - last_cycle}, manifest {mac.latency}"
    assert overflows == pulse_cycles, (f"{mac.name}: overflow pulses at {overflows[:8]}, golden "
                                       f"{pulse_cycles[:8]} ({len(overflows)} vs {len(pulse_cycles)})")
    assert bool(pulse_cycles) == any(o for *_, o in expected)


@cocotb.test(skip=_skip("mixed"))
async def mixed_modes_tiles(dut):
    rng, prng = rngs(salt=1)
    await start(dut)
    macs = _instances(dut, "mixed")
    plans = [_mixed_schedule(mac, rng, prng) for mac in macs]
    outs = await drive_all(dut.clk, [(mac, schedule) for mac, (schedule, _) in zip(macs, plans)])
    for mac, (_, (expected, pulses)), (results, overflows) in zip(macs, plans, outs):
        _check_mixed(mac, expected, pulses, results, overflows)


def _int16_schedule(mac, rng, prng):
    p = mac.p
    assert p["int16"], f"{mac.name} was built without INT16 pieces"
    bubble = env_float("NMFORGE_STALL", 0.25)
    corners = np.array([-32768, 32767, -1, 0, 1, 255, 256, -256, -255, 128, -129], dtype=np.int64)
    schedule, expected = [], []
    for tile in range(env_int("NMFORGE_INT16_TILES", 150)):
        k = int(rng.integers(1, 3 * mac.n + 1))
        a16, w16 = rng.integers(-32768, 32768, k), rng.integers(-32768, 32768, k)
        if tile % 4 == 1:
            a16, w16 = rng.choice(corners, k), rng.choice(corners, k)
        modes, a, w = int16_schedule(a16, w16, mac.n)
        direct, _ = int_dot(a16, w16, p["acc_width"], p["overflow"])
        want, partial_overflow = scalable_tile(modes, a, w, p["acc_width"], p["overflow"], True)
        # the policy applies per beat in the PE and once in int_dot: they agree when wrapping
        # (arithmetic mod 2^acc_width) or when no partial sum overflowed
        if p["overflow"] == "wrap" or not partial_overflow:
            assert want == direct, f"golden.scalable gives {want}, int_dot {direct}"
        for b in range(len(modes)):
            while prng.random() < bubble:
                schedule.append((0, 0, 0, 1))
            schedule.append((mac.pack_a([a[b]])[0], mac.pack_w([w[b]], [modes[b]])[0], 1,
                             int(b == len(modes) - 1)))
        expected.append((len(schedule) - 1, want))
    return schedule, expected


def _check_int16(mac, expected, results):
    assert len(results) == len(expected), f"{mac.name}: {len(results)} results for {len(expected)} tiles"
    for tile, ((cycle, got), (last_cycle, want)) in enumerate(zip(results, expected)):
        assert got == want, f"{mac.name} INT16 tile {tile}: result {got}, a16.w16 = {want}"
        assert cycle - last_cycle == mac.latency, f"{mac.name} INT16 tile {tile}: latency {cycle - last_cycle}"


@cocotb.test(skip=_skip("int16"))
async def int16_composition(dut):
    rng, prng = rngs(salt=2)
    await start(dut)
    macs = _instances(dut, "int16")
    plans = [_int16_schedule(mac, rng, prng) for mac in macs]
    outs = await drive_all(dut.clk, [(mac, schedule) for mac, (schedule, _) in zip(macs, plans)])
    for mac, (_, expected), (results, _) in zip(macs, plans, outs):
        _check_int16(mac, expected, results)


# ---------------------------------------------------------------------------------------------
# Build and run (plain Python: tests/test_pe_scalable.py, benchmarks/scalable_int4.py)


def build_bench(work_dir, configs, module="scalable_mac_bench"):
    """Write `module`.v (ScalableMacs side by side, ports `<name>__<port>`) and `module`.json.

    `configs`: {name: {"mac": ScalableMac keyword arguments, "tests": [tests that apply],
    optionally "class": a ScalableMac subclass to build instead}}. Returns (verilog path,
    manifest path).
    """
    from ..rtl.mac_scalable import ScalableMac
    macs = {}
    for name, config in configs.items():
        mac = config.get("class", ScalableMac)(**config["mac"])
        macs[name] = (mac, {"tests": list(config["tests"]),
                            "parameters": {"n": mac.n, "acc_width": mac.acc_width,
                                           "overflow": "saturate" if mac.saturate else "wrap",
                                           "int16": mac.int16, "class": type(mac).__name__}})
    return write_bench(work_dir, module, "mac_scalable_bench", macs)


def run_bench(verilog_path, manifest_path, work_dir, *, tests=TESTS, instances=None, seed=1,
              options=None, log=print, waves_on_failure=True):
    """Run this testbench (only `tests`, on `instances` or all) on a `build_bench` output; the
    Verilator build is cached per Verilog text under `work_dir`. `options` become NMFORGE_*
    variables. Returns sim.runner.SimResult."""
    info = json.loads(pathlib.Path(manifest_path).read_text())
    chosen = instances or list(info["instances"])
    tests = [t for t in tests if any(t in info["instances"][name]["tests"] for name in chosen)]
    return run_bench_module("nmforge.sim.tb_mac_scalable", verilog_path, manifest_path, work_dir,
                            tests, instances, seed, options, log, waves_on_failure)
