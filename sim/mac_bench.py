"""MAC-unit testbench plumbing shared by the PE kinds' MAC-level benches.

A MAC unit alone, driven one (a, w, valid, last) tuple per cycle: `LaneMacModel` packs N lanes of
element codes into the `a`/`w` ports, `schedule_tiles` lays tiles out with bubbles, `drive` runs
a schedule and collects the results, `check` compares them with golden, and `every_pair_tiles`
builds the single-product tiles of an exhaustive (or corner + random) pair test.
`write_bench` / `run_bench` put several MAC units side by side in one Verilog module, so one
Verilator build serves many configurations (the scalable and MX benches).
"""
import json
import pathlib

import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from .payload import pack

EXHAUSTIVE_LIMIT = 1 << 16


class LaneMacModel:
    """The ports of one MAC unit from its manifest; subclasses add `golden(a, w)` (tiles of
    (..., B, N) codes -> (results, flags)) and `junk_codes(rng)` ((1, N) activation and weight
    codes for a bubble)."""

    def __init__(self, info):
        self.n = info["parameters"]["n"]
        self.latency = info["latency_cycles"]
        ports = info["interfaces"]
        self.a_layout, self.w_layout = ports["a"]["layout"], ports["w"]["layout"]

    def pack_rows(self, a, w):
        """Packed a/w port values for (T, N) code arrays (checked against payload.pack)."""
        sa, sw = self.a_layout["stride"], self.w_layout["stride"]
        pa = np.zeros(len(a), dtype=object)
        pw = np.zeros(len(w), dtype=object)
        for i in range(self.n):
            pa += a[:, i].astype(object) << (i * sa)
            pw += w[:, i].astype(object) << (i * sw)
        assert pa[0] == pack(self.a_layout, a[0]) and pw[0] == pack(self.w_layout, w[0])
        return [int(x) for x in pa], [int(x) for x in pw]

    def junk(self, rng):
        """Packed junk operands for a bubble."""
        ja, jw = self.pack_rows(*self.junk_codes(rng))
        return ja[0], jw[0]


def schedule_tiles(model, tiles, rng, prng, stall):
    """Beats of every (a, w) tile back to back, bubbles (junk operands, junk `last`) at
    probability `stall`; returns the schedule and each tile's last cycle."""
    schedule, last_cycles = [], []
    for a, w in tiles:
        packed_a, packed_w = model.pack_rows(a, w)
        for b in range(len(a)):
            while stall and prng.random() < stall:
                schedule.append(model.junk(rng) + (0, int(prng.random() < 0.5)))
            schedule.append((packed_a[b], packed_w[b], 1, int(b == len(a) - 1)))
        last_cycles.append(len(schedule) - 1)
    return schedule, last_cycles


def expected_of(model, tiles):
    """(results, flags) arrays of golden, tile by tile."""
    golden = [model.golden(a, w) for a, w in tiles]
    return np.array([int(g[0]) for g in golden]), np.array([bool(g[1]) for g in golden])


async def drive(dut, schedule, latency):
    """schedule: (a, w, valid, last) per cycle. Returns [(cycle, result, overflow)] for every
    cycle with result_valid, and the cycles where overflow rose without a result."""
    results, stray = [], []
    for cycle in range(len(schedule) + latency + 2):
        await RisingEdge(dut.clk)
        if cycle < len(schedule):
            a, w, valid, last = schedule[cycle]
            dut.a.value, dut.w.value, dut.valid.value, dut.last.value = a, w, valid, last
        else:
            dut.valid.value = 0
        await ReadOnly()
        if dut.result_valid.value == 1:
            results.append((cycle, int(dut.result.value), int(dut.overflow.value)))
        elif dut.overflow.value == 1:
            stray.append(cycle)
    return results, stray


def check(results, stray, expected, last_cycles, latency, what, describe):
    """Compare every published result with (codes, flags) of `expected`, and its latency."""
    assert not stray, f"{what}: overflow pulsed without a result at cycles {stray[:5]}"
    codes, flags = expected
    assert len(results) == len(codes), f"{what}: {len(results)} results for {len(codes)} tiles"
    for t, (cycle, got, flag) in enumerate(results):
        if got != int(codes[t]) or flag != int(flags[t]):
            raise AssertionError(f"{what}: tile {t} ({describe(t)}): result {got:#x} overflow "
                                 f"{flag}, golden {int(codes[t]):#x} overflow {int(flags[t])}")
        assert cycle - last_cycles[t] == latency, \
            f"{what}: tile {t}: latency {cycle - last_cycles[t]}, manifest {latency}"


def every_pair_tiles(n, fa, fb, corners, random_codes, rng, count):
    """Single-product tiles: every (fa, fb) code pair when there are at most EXHAUSTIVE_LIMIT,
    else every pair of `corners(fmt)` codes plus `count` pairs of `random_codes(fmt, rng,
    count)`; shuffled, pair t in lane t mod N (other lanes 0 x 0). Returns (a, w) of shape
    (T, N), the pairs (pa, pb) and a description."""
    if fa.num_codes * fb.num_codes <= EXHAUSTIVE_LIMIT:
        pa, pb = np.meshgrid(np.arange(fa.num_codes), np.arange(fb.num_codes), indexing="ij")
        pa, pb = pa.ravel(), pb.ravel()
        what = f"all {len(pa)} {fa.name} x {fb.name} pairs"
    else:
        pa, pb = (x.ravel() for x in np.meshgrid(corners(fa), corners(fb), indexing="ij"))
        pa = np.concatenate([pa, random_codes(fa, rng, count)])
        pb = np.concatenate([pb, random_codes(fb, rng, count)])
        what = f"{len(pa)} corner and random {fa.name} x {fb.name} pairs"
    order = rng.permutation(len(pa))
    pa, pb = pa[order], pb[order]
    a = np.zeros((len(pa), n), dtype=np.int64)
    w = np.zeros((len(pb), n), dtype=np.int64)
    lane = np.arange(len(pa)) % n
    a[np.arange(len(pa)), lane] = pa
    w[np.arange(len(pb)), lane] = pb
    return a, w, (pa, pb), what


async def check_every_pair(dut, model, fa, fb, corners, random_codes, rng, count):
    """The pair test: `every_pair_tiles`, one per cycle back to back, every result checked."""
    a, w, (pa, pb), what = every_pair_tiles(model.n, fa, fb, corners, random_codes, rng, count)
    expected = model.golden(a[:, None, :], w[:, None, :])
    packed_a, packed_w = model.pack_rows(a, w)
    schedule = [(x, y, 1, 1) for x, y in zip(packed_a, packed_w)]
    results, stray = await drive(dut, schedule, model.latency)
    check(results, stray, expected, list(range(len(schedule))), model.latency, what,
          lambda t: f"a {int(pa[t]):#x} w {int(pb[t]):#x}")
    dut._log.info(f"checked {what}, one per cycle")


def write_bench(work_dir, module, block, macs):
    """Write `module`.v (the MAC units of `macs` = {name: (mac, info)} side by side, ports
    `<name>__<port>`) and `module`.json ({"module", "block", "instances": {name: info + prefix,
    latency_cycles, interfaces}}). Returns (verilog path, manifest path)."""
    from amaranth import Module, Signal, Value
    from amaranth.back import verilog
    from amaranth.lib import wiring

    from ..gen.manifest import describe_interfaces

    work_dir = pathlib.Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    top, ports, instances = Module(), [], {}
    for name, (mac, info) in macs.items():
        top.submodules[name] = mac
        for port, member in mac.signature.members.items():
            sig = Signal(member.shape, name=f"{name}__{port}")
            inner = getattr(mac, port)
            top.d.comb += inner.eq(sig) if member.flow == wiring.In else sig.eq(inner)
            ports.append(Value.cast(sig))
        instances[name] = {"prefix": f"{name}__", **info, "latency_cycles": mac.latency,
                           "interfaces": describe_interfaces(mac)}
    verilog_path = work_dir / f"{module}.v"
    verilog_path.write_text(verilog.convert(top, ports=ports, name=module, emit_src=False))
    manifest_path = work_dir / f"{module}.json"
    manifest_path.write_text(json.dumps({"module": module, "block": block,
                                         "instances": instances}, indent=2))
    return verilog_path, manifest_path


def run_bench(testbench, verilog_path, manifest_path, work_dir, tests, instances=None, seed=1,
              options=None, log=print, waves_on_failure=True):
    """Run cocotb module `testbench` (its `tests`, on `instances` or all) on a `write_bench`
    output; the Verilator build is cached per Verilog text under `work_dir`. `options` become
    NMFORGE_* variables. Returns sim.runner.SimResult."""
    from .runner import run_testbench
    info = json.loads(pathlib.Path(manifest_path).read_text())
    env = {"NMFORGE_MANIFEST": str(pathlib.Path(manifest_path).resolve()),
           "NMFORGE_TESTS": ",".join(tests)}
    if instances:
        env["NMFORGE_INSTANCES"] = ",".join(instances)
    env.update({f"NMFORGE_{k.upper()}": str(v) for k, v in (options or {}).items()})
    return run_testbench(pathlib.Path(verilog_path).resolve(), info["module"], testbench,
                         pathlib.Path(work_dir).resolve(), env, seed, log=log,
                         waves_on_failure=waves_on_failure)
