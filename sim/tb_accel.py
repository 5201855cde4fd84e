"""Accelerator regression: runs one program (command words + data-in words, written by the caller
with sim.accel_program.write_program) through the AXI4-Stream interfaces under random stalls on
all three streams, and checks it bit for bit against the golden executor's expectation: every
STORE packet (words and tlast), then the status (cmd_error, error_code, overflow, meta_error,
bad_groups, array_beats). A watchdog fails the run when the accelerator stops making progress.

Environment: NMFORGE_MANIFEST, NMFORGE_SEED, NMFORGE_PROGRAM (the JSON file; without it
sim.accel_program.random_program makes NMFORGE_GEMMS random GEMMs), NMFORGE_STALL (pause
probability on every stream), NMFORGE_RESULT_JSON (cycles from the first command to idle and the
accelerator's own counters are written here), NMFORGE_WATCHDOG (a window of cycles: a window
without any stream transfer or array beat fails the run; default 20000), NMFORGE_PROGRESS (a file
the data-out words received so far are written to after every window, for a progress bar).
Without stalls the drivers only wake for beats (sim.streams), so the run costs Python time per
stream beat, not per cycle.
"""
import json
import os

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, RisingEdge, Timer

from ..rtl.isa import COMMAND_BITS, AcceleratorShape, encode
from .accel_program import expected_run, random_program
from .axis import AxisPort
from .harness import CLOCK_NS, ProgressFile, env_float, env_int, manifest, rngs, start
from .streams import StreamSink, StreamSource, never_pause, random_pauses


@cocotb.test()
async def accelerator_program(dut):
    info = manifest()
    width = info["accelerator"]["shape"]["stream_width"]
    rng, prng = rngs()
    if os.environ.get("NMFORGE_PROGRAM"):
        with open(os.environ["NMFORGE_PROGRAM"]) as f:
            program = json.load(f)
    else:  # `nmforge sim --block accelerator`: random GEMMs larger than the array
        shape = AcceleratorShape(**info["accelerator"]["shape"])
        commands, data = random_program(shape, rng, env_int("NMFORGE_GEMMS", 3))
        program = {"commands": [encode(c) for c in commands], "data_in": data,
                   "expected": expected_run(shape, commands, data)}
    stall = env_float("NMFORGE_STALL", 0.3)
    watchdog_cycles = env_int("NMFORGE_WATCHDOG", 20000)

    def pauses():
        return random_pauses(prng, stall) if stall else never_pause()

    await start(dut)
    cmd_port = AxisPort(dut, "s_axis_cmd", COMMAND_BITS)
    in_port = AxisPort(dut, "s_axis_data", width)
    out_port = AxisPort(dut, "m_axis_data", width)
    commands = StreamSource(cmd_port, "s_axis_cmd", dut.clk, pauses())
    data_in = StreamSource(in_port, "s_axis_data", dut.clk, pauses())
    data_out = StreamSink(out_port, "m_axis_data", dut.clk, pauses())

    for word in program["data_in"]:
        data_in.send_nowait(in_port.beat(int(word)))
    for number, word in enumerate(program["commands"]):
        commands.send_nowait(cmd_port.beat(int(word), number == len(program["commands"]) - 1))

    expected_packets = program["expected"]["packets"]
    expected_words = sum(len(p) for p in expected_packets)
    progress = ProgressFile(os.environ.get("NMFORGE_PROGRESS"))

    def moved():
        return commands.sent + data_in.sent + data_out.count() + int(dut.array_beats.value)

    async def watchdog():
        """Fails the run when nothing moved in a whole window of `watchdog` cycles (so a stop is
        caught within two windows); reports the data-out words received after every window."""
        before = None
        while True:
            await Timer(watchdog_cycles * CLOCK_NS, unit="ns")
            progress.write(data_out.count())
            now = moved()
            assert now != before, (
                f"watchdog: no transfer for {watchdog_cycles} cycles (commands sent "
                f"{commands.sent}/{len(program['commands'])}, data-in words "
                f"{data_in.sent}/{len(program['data_in'])}, data-out words "
                f"{data_out.count()}/{expected_words}, busy {int(dut.busy.value)})")
            before = now

    watching = cocotb.start_soon(watchdog())
    await commands.wait()
    await data_out.wait_count(expected_words)
    edge, settled = RisingEdge(dut.clk), ReadOnly()
    # Both waits end in a read-only phase (the drivers signal there): the last command's tail.
    while int(dut.busy.value) or int(dut.s_axis_cmd__tvalid.value):
        await edge
        await settled
    end = get_sim_time("ns")
    watching.cancel()
    progress.write(data_out.count())

    got = list(data_out.queue)
    assert len(got) == expected_words, f"{len(got)} data-out words, expected {expected_words}"
    position = 0
    for number, packet in enumerate(expected_packets):
        for i, want in enumerate(packet):
            beat = got[position]
            tdata, tlast = beat & ((1 << width) - 1), beat >> width
            assert tdata == int(want), (f"STORE {number} word {i}: got {tdata:#x}, "
                                        f"expected {int(want):#x}")
            assert tlast == (i == len(packet) - 1), f"STORE {number} word {i}: tlast {tlast}"
            position += 1
    status = program["expected"]["status"]
    for name in ("cmd_error", "error_code", "overflow", "meta_error", "bad_groups", "array_beats"):
        value = int(getattr(dut, name).value)
        assert value == int(status[name]), f"status {name} = {value}, golden says {status[name]}"
    assert len(data_in.queue) == 0 and data_in.sent == len(program["data_in"]), \
        f"data-in words taken {data_in.sent}, program has {len(program['data_in'])}"
    assert not data_out.protocol_errors, data_out.protocol_errors[:3]

    if os.environ.get("NMFORGE_RESULT_JSON"):
        first = commands.first_transfer if commands.first_transfer is not None else end
        with open(os.environ["NMFORGE_RESULT_JSON"], "w") as f:
            json.dump({"cycles": round((end - first) / CLOCK_NS),
                       "busy_cycles": int(dut.cycles.value),
                       "array_beats": int(dut.array_beats.value)}, f)
