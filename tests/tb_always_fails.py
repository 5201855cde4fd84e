"""A cocotb testbench that fails after a few clock cycles, for sim.runner's failure path (the run
is repeated with waves, so the report names a waveform): tests/test_build_cache.py."""
import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles


@cocotb.test()
async def fails_after_five_cycles(dut):
    cocotb.start_soon(Clock(dut.clk, 10, "ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 5)
    assert False, "this testbench always fails"
