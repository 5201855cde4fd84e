"""Shared testbench plumbing: the manifest, the seed, clock and reset, the watchdog bound."""
import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, RisingEdge, Timer

CLOCK_NS = 10


def manifest() -> dict:
    with open(os.environ["NMFORGE_MANIFEST"]) as f:
        return json.load(f)


def seed() -> int:
    return int(os.environ.get("NMFORGE_SEED", "1"))


def rngs(salt=0):
    """(numpy Generator, random.Random) seeded from the run's seed."""
    s = seed() + salt
    return np.random.default_rng(s), random.Random(s)


def env_float(name, default):
    return float(os.environ.get(name, default))


def env_int(name, default):
    return int(os.environ.get(name, default))


class ProgressFile:
    """A count the testbench reports while it runs (e.g. result words received), rewritten in
    place at `path` (nothing when path is None) for the process that started the simulation."""

    def __init__(self, path):
        self.path = path

    def write(self, count):
        if self.path:
            with open(f"{self.path}.tmp", "w") as f:
                f.write(f"{count}\n")
            os.replace(f"{self.path}.tmp", self.path)


class CounterWatch:
    """Checks an event counter (e.g. `bad_groups`) at each change of its value, not each cycle
    (one wake-up per event): it may only grow, by at most `max_step` per change, or return to 0
    (reset). A final count alone cannot see a counter that steps wrongly and back (a bit
    inverted on every update is right again after an even number of updates).
    `violations`: [(cycle, before, after)]."""

    def __init__(self, signal, max_step):
        self.signal, self.max_step = signal, max_step
        self.violations = []
        self.value = int(signal.value)
        cocotb.start_soon(self._watch())

    async def _watch(self):
        while True:
            await self.signal.value_change
            now = int(self.signal.value)
            if now != 0 and not self.value < now <= self.value + self.max_step:
                self.violations.append((cycle(), self.value, now))
            self.value = now


def cycle() -> int:
    """The current clock cycle (simulated time / the clock period)."""
    return int(get_sim_time("ns")) // CLOCK_NS


async def skip_cycles(dut, count: int):
    """From a rising edge of the CLOCK_NS clock, the `count`-th rising edge after it, like
    `ClockCycles(dut.clk, count)`, but with one timer instead of a Python wake-up per edge: the
    simulator runs the cycles alone (the overflow corners hold their inputs for up to 2^20
    cycles, ~40 s per regression with ClockCycles, ~1 s with this)."""
    now = get_sim_time("ps")
    period = CLOCK_NS * 1000
    assert now % period == 0, f"skip_cycles called at {now} ps, not on a rising edge"
    if count > 1:
        await Timer(count * period - period // 2, unit="ps")
    if count > 0:
        await RisingEdge(dut.clk)


def watchdog_bound(latency: int, beats: int, stall: float) -> int:
    """Cycles a testbench waits for its next result beat before it declares the design hung:
    the `beats` input beats of one output tile plus the manifest's `latency`, stretched by the
    stall probability (each of the two input streams and the consumer pauses with probability
    `stall`, so a beat takes 1 / (1 - stall)^3 cycles on average), with a margin of 4x + 64.
    A correct design always delivers within it; a hung one fails in a few hundred cycles."""
    return int(4 * (latency + beats) / (1 - min(stall, 0.9)) ** 3) + 64


async def start(dut, cycles=3):
    """Start a CLOCK_NS clock and hold a synchronous reset for `cycles`. A design carrying Yosys
    mutants (`nmforge mutate`: a `mutsel` input, 0 = the original design) runs the mutant
    NMFORGE_MUTANT."""
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    if hasattr(dut, "mutsel"):
        dut.mutsel.value = env_int("NMFORGE_MUTANT", 0)
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
