"""Shared testbench plumbing: the manifest, the seed, clock and reset."""
import json
import os
import random

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge


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


CLOCK_NS = 10   # the testbench clock's period


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


async def start(dut, cycles=3):
    """Start a CLOCK_NS clock and hold a synchronous reset for `cycles`."""
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
