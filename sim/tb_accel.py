"""Accelerator regression: runs one program (command words + data-in words, written by the caller
with sim.accel_program.write_program) through the AXI4-Stream interfaces under random stalls on
all three streams, and checks it bit for bit against the golden executor's expectation: every
STORE packet (words and tlast), then the status (cmd_error, error_code, overflow, meta_error,
bad_groups, array_beats). A watchdog fails the run when the accelerator stops making progress.

Environment: NMFORGE_MANIFEST, NMFORGE_SEED, NMFORGE_PROGRAM (the JSON file; without it
sim.accel_program.random_program makes NMFORGE_GEMMS random GEMMs), NMFORGE_STALL (pause
probability on every stream), NMFORGE_RESULT_JSON (cycles from the first command to idle and the
accelerator's own counters are written here), NMFORGE_WATCHDOG (cycles without any stream transfer
or array beat before the run fails; default 20000).
"""
import json
import os

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from ..rtl.isa import COMMAND_BITS, AcceleratorShape, encode
from .accel_program import expected_run, random_program
from .axis import AxisPort
from .harness import env_float, env_int, manifest, rngs, start
from .streams import StreamMonitor, StreamSink, StreamSource, never_pause, random_pauses


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
    watchdog = env_int("NMFORGE_WATCHDOG", 20000)

    def pauses():
        return random_pauses(prng, stall) if stall else never_pause()

    await start(dut)
    cmd_port = AxisPort(dut, "s_axis_cmd", COMMAND_BITS)
    in_port = AxisPort(dut, "s_axis_data", width)
    out_port = AxisPort(dut, "m_axis_data", width)
    commands = StreamSource(cmd_port, "s_axis_cmd", dut.clk, pauses())
    data_in = StreamSource(in_port, "s_axis_data", dut.clk, pauses())
    data_out = StreamSink(out_port, "m_axis_data", dut.clk, pauses())
    monitors = [StreamMonitor(port, name, dut.clk) for port, name in
                ((cmd_port, "s_axis_cmd"), (in_port, "s_axis_data"), (out_port, "m_axis_data"))]

    for word in program["data_in"]:
        data_in.send_nowait(in_port.beat(int(word)))
    for number, word in enumerate(program["commands"]):
        commands.send_nowait(cmd_port.beat(int(word), number == len(program["commands"]) - 1))

    expected_packets = program["expected"]["packets"]
    expected_words = sum(len(p) for p in expected_packets)
    quiet, cycle = 0, 0
    progress = -1
    while True:
        await RisingEdge(dut.clk)
        await ReadOnly()
        cycle += 1
        moved = sum(len(mon.beats) for mon in monitors) + int(dut.array_beats.value)
        quiet = 0 if moved != progress else quiet + 1
        progress = moved
        done = (not commands.queue and commands.sent == len(program["commands"])
                and data_out.count() >= expected_words and int(dut.busy.value) == 0
                and int(dut.s_axis_cmd__tvalid.value) == 0)
        if done:
            break
        assert quiet < watchdog, (
            f"watchdog: no transfer for {quiet} cycles (commands sent {commands.sent}/"
            f"{len(program['commands'])}, data-in words {data_in.sent}/{len(program['data_in'])}, "
            f"data-out words {data_out.count()}/{expected_words}, busy {int(dut.busy.value)})")
    end_cycle = monitors[0].cycle

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
    for monitor in monitors:
        assert not monitor.protocol_errors, monitor.protocol_errors[:3]

    if os.environ.get("NMFORGE_RESULT_JSON"):
        first = monitors[0].beats[0][0] if monitors[0].beats else 0
        with open(os.environ["NMFORGE_RESULT_JSON"], "w") as f:
            json.dump({"cycles": end_cycle - first, "busy_cycles": int(dut.cycles.value),
                       "array_beats": int(dut.array_beats.value)}, f)
