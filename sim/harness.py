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


async def start(dut, cycles=3):
    """Start a 10 ns clock and hold a synchronous reset for `cycles`."""
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
