"""Board testbench: the host driver `nmforge.fpga.host.HostLink`, unchanged, drives the simulated
board logic (`rtl.host_link.LinkedArray`: UART receiver and transmitter, host-link engine, array)
through its `rx`/`tx` pins, and computes GEMMs that must equal the PE kind's golden model (sim.kinds; golden.gemm.sparse_gemm_int
for "int").

Sync host, async simulator: the HostLink runs in a thread started with `cocotb.task.bridge`, and its
port (`UartBridge`) implements the blocking `write`/`read` with `cocotb.task.resume`, which runs a
coroutine in the simulator and blocks the thread until it returns. Only one side runs at a time:
simulated time stands still while the host computes and advances only inside `read`/`sleep`, so
a run is deterministic for a seed. `write` queues the bytes (like an OS serial buffer) and returns;
a coroutine drives them onto `rx` bit by bit; another decodes `tx` (mid-bit sampling) into the
bytes that `read` returns, or fewer on a timeout, as pyserial does.

Environment: NMFORGE_MANIFEST (the array's manifest), NMFORGE_SEED, NMFORGE_DIVISOR (cycles per
bit the design was built with), NMFORGE_TIMEOUT_CYCLES (its command timeout), NMFORGE_SHAPES
(GEMM shapes "MxKxN,..."; default a random set), NMFORGE_RESULT_JSON (link statistics go here).
"""
import json
import os
from collections import deque

import cocotb
from cocotb.task import bridge, resume
import numpy as np
from cocotb.triggers import ClockCycles, FallingEdge

from ..fpga.host import HostLink
from ..rtl.host_link import Op
from .harness import env_int, manifest, rngs, start
from .streams import StreamMonitor
from .array_model import ArrayModel, corrupt_groups

CLOCK_HZ = 100e6  # harness.start: a 10 ns clock


class UartBridge:
    """A serial port on the simulated UART pins: `write(bytes)`, `read(n) -> bytes` (fewer on a
    timeout of `read_timeout_cycles`), `sleep(seconds)` of simulated time; blocking methods for a
    `bridge` thread. `frames` lets a test put malformed frames on the line."""

    def __init__(self, dut, divisor, read_timeout_cycles):
        self.dut, self.clk, self.divisor = dut, dut.clk, divisor
        self.read_timeout_cycles = read_timeout_cycles
        self.outgoing = deque()      # (byte, stop bit) frames to drive on rx
        self.incoming = deque()      # bytes decoded from tx
        self.framing_errors = 0
        self.bit_period = float(divisor)  # cycles per bit we send with (a test may mistune it)
        self.bytes_sent = 0
        dut.rx.value = 1
        cocotb.start_soon(self._drive())
        cocotb.start_soon(self._decode())

    async def _drive(self):
        while True:
            if not self.outgoing:
                await ClockCycles(self.clk, 1)
                continue
            item = self.outgoing.popleft()
            if item[0] == "glitch":
                self.dut.rx.value = 0
                await ClockCycles(self.clk, item[1])
                self.dut.rx.value = 1
                await ClockCycles(self.clk, self.divisor * 2)
                continue
            byte, stop = item
            edges = [round(i * self.bit_period) for i in range(11)]
            for i, bit in enumerate([0, *((byte >> i) & 1 for i in range(8)), stop]):
                self.dut.rx.value = bit
                await ClockCycles(self.clk, edges[i + 1] - edges[i])
            self.dut.rx.value = 1
            if not stop:  # a break: let the receiver see the idle line again
                await ClockCycles(self.clk, self.divisor * 2)
            self.bytes_sent += 1

    async def _decode(self):
        while True:
            await FallingEdge(self.dut.tx)
            await ClockCycles(self.clk, self.divisor // 2)
            if self.dut.tx.value != 0:
                continue
            byte = 0
            for i in range(8):
                await ClockCycles(self.clk, self.divisor)
                byte |= int(self.dut.tx.value) << i
            await ClockCycles(self.clk, self.divisor)
            if self.dut.tx.value != 1:
                self.framing_errors += 1
                continue
            self.incoming.append(byte)

    # --- blocking side (bridge thread) --------------------------------------------------------

    def write(self, data):
        self._queue(bytes(data))
        return len(data)

    def read(self, n):
        return self._read(n)

    def sleep(self, seconds):
        self._wait(max(1, round(seconds * CLOCK_HZ)))

    def frames(self, items):
        """Queue raw frames: (byte, stop bit) tuples, or ("glitch", cycles) low pulses."""
        self._queue_frames(list(items))

    @resume
    async def _queue(self, data):
        self.outgoing.extend((byte, 1) for byte in data)

    @resume
    async def _queue_frames(self, items):
        self.outgoing.extend(items)

    @resume
    async def _read(self, n):
        waited = 0
        while len(self.incoming) < n and waited < self.read_timeout_cycles:
            await ClockCycles(self.clk, self.divisor)
            waited += self.divisor
        return bytes(self.incoming.popleft() for _ in range(min(n, len(self.incoming))))

    @resume
    async def _wait(self, cycles):
        await ClockCycles(self.clk, cycles)


def _shapes(model, rng):
    """NMFORGE_SHAPES, else: one tile-multiple GEMM, one with extreme values (overflows small
    accumulators), one that needs padding, then a random one."""
    text = os.environ.get("NMFORGE_SHAPES")
    if text:
        return [tuple(int(x) for x in s.split("x")) for s in text.split(",")]
    r, m, c = model.rows, model.m, model.cols
    return [(r, 2 * m, c), (2 * r, 4 * m, 2 * c), (r + 1, 3 * m, c + 1),
            (r * int(rng.integers(1, 3)), m * int(rng.integers(1, 5)), c * int(rng.integers(1, 3)))]


async def _setup(dut):
    info = manifest()
    divisor = env_int("NMFORGE_DIVISOR", 8)
    timeout_cycles = env_int("NMFORGE_TIMEOUT_CYCLES", 0)
    await start(dut)
    port = UartBridge(dut, divisor, read_timeout_cycles=200 * 10 * divisor)
    try:  # the array's streams, where the design keeps its hierarchy (not in a gate-level netlist)
        monitors = {name: StreamMonitor(dut.array, name, dut.clk) for name in ("act", "weight", "result")}
    except AttributeError:
        dut._log.info("no `array` instance: the array's streams are not monitored")
        monitors = {}
    return info, port, monitors, timeout_cycles / CLOCK_HZ


def _link(port, info, device_timeout_s):
    return HostLink(port, info, sleep=port.sleep, device_timeout_s=device_timeout_s, retries=50)


@cocotb.test()
async def host_gemm(dut):
    """Random GEMMs end to end through the UART, bit-exact against the golden model; overflow
    flag and CLEAR; every beat reaches the array exactly once."""
    info, port, monitors, device_timeout_s = await _setup(dut)
    model = ArrayModel(info)
    rng, _ = rngs()

    def host():
        link = _link(port, info, device_timeout_s)
        assert link.status() == {"overflow": False, "meta_error": False, "result_valid": False,
                                 "act_full": False, "weight_full": False, "link_error": False,
                                 "bad_groups": 0}
        beats = tiles = 0
        runs = []
        for number, (mdim, k, ndim) in enumerate(_shapes(model, rng)):
            ops = model.random_gemm(rng, (mdim, k, ndim), extreme=number % 2 == 1)
            want, overflowed = model.kind.golden(ops)
            got = link.gemm(ops.a, ops.values, ops.indices)
            assert np.array_equal(got, want), f"GEMM {mdim}x{k}x{ndim} differs\ngot\n{got}\nwant\n{want}"
            status = link.status()
            assert status["overflow"] == overflowed, f"overflow flag {status['overflow']}, golden {overflowed}"
            assert not status["meta_error"] and status["bad_groups"] == 0 and not status["link_error"]
            rows_p, cols_p = -(-mdim // model.rows) * model.rows, -(-ndim // model.cols) * model.cols
            tiles += (rows_p // model.rows) * (cols_p // model.cols)
            beats += (rows_p // model.rows) * (cols_p // model.cols) * (k // model.m)
            runs.append({"shape": [mdim, k, ndim], "overflowed": overflowed})
            link.clear()
            assert not link.status()["overflow"], "CLEAR left the overflow flag set"
        return link.stats, beats, tiles, runs

    stats, beats, tiles, runs = await bridge(host)()
    if monitors:
        assert len(monitors["act"].beats) == len(monitors["weight"].beats) == beats, \
            f"array took {len(monitors['act'].beats)} act / {len(monitors['weight'].beats)} weight beats, sent {beats}"
        assert len(monitors["result"].beats) == tiles
    for monitor in monitors.values():
        assert not monitor.protocol_errors, monitor.protocol_errors[:3]
    assert port.framing_errors == 0
    dut._log.info(f"{len(runs)} GEMMs {[r['shape'] for r in runs]}: {stats}")
    if os.environ.get("NMFORGE_RESULT_JSON"):
        with open(os.environ["NMFORGE_RESULT_JSON"], "w") as f:
            json.dump({"runs": runs, "stats": stats, "beats": beats, "tiles": tiles}, f)


@cocotb.test()
async def host_protocol(dut):
    """Busy holding registers, an empty RESULT, an unknown opcode, malformed metadata, a glitch,
    a framing error, a truncated command and resynchronisation."""
    info, port, monitors, device_timeout_s = await _setup(dut)
    model = ArrayModel(info)
    rng, _ = rngs(salt=1)

    def host():
        link = _link(port, info, device_timeout_s)
        assert link.info()["rows"] == model.rows
        assert link.try_read_result() is None, "RESULT answered a beat before any was computed"

        # One K-group tile (M x M x cols), beat by beat, with the busy answers on the way.
        ops = model.random_gemm(rng, (model.rows, model.m, model.cols))
        (act_beat, weight_beat), = model.beats(ops)
        assert link.try_send_act(act_beat)
        assert not link.try_send_act(act_beat), "a second act beat was accepted while one was held"
        status = link.status()
        assert status["act_full"] and not status["weight_full"]
        assert link.try_send_weight(weight_beat)
        tile = link.read_result()
        want, _ = model.kind.golden(ops)
        assert np.array_equal(tile, want)
        assert link.try_read_result() is None, "the result beat was read twice"
        assert not any(link.status()[k] for k in ("act_full", "weight_full", "result_valid", "link_error"))

        # Malformed index metadata: flagged and counted by the array, reported by STATUS.
        if not model.dense:
            ops = model.random_gemm(rng, (2 * model.rows, 3 * model.m, model.cols))
            bad, indices = corrupt_groups(rng, ops.indices, model.n, model.m, 2)
            link.gemm(ops.a, ops.values, indices)
            status = link.status()
            assert status["meta_error"] and status["bad_groups"] == len(bad) * 2, status
            link.clear()
            status = link.status()
            assert not status["meta_error"] and status["bad_groups"] == 0

        # Unknown opcode: 0xFF and link_error; CLEAR clears it.
        port.write(bytes([0x42]))
        assert port.read(1) == bytes([0xFF])
        assert link.status()["link_error"]
        link.clear()
        assert not link.status()["link_error"]

        # A glitch shorter than half a bit is ignored.
        port.frames([("glitch", port.divisor // 2 - 2)])
        link.nop()
        assert not link.status()["link_error"]

        # The receiver samples mid-bit: a sender 4% fast or slow still gets through.
        for skew in (0.96, 1.04):
            port.bit_period = port.divisor * skew
            link.nop()
            assert not link.status()["link_error"], f"bit period x{skew} was not received cleanly"
        port.bit_period = float(port.divisor)

        # A framing error (stop bit 0) drops the byte and sets link_error.
        port.frames([(Op.NOP, 0)])
        link.nop()
        assert link.status()["link_error"]
        link.clear()

        # A truncated ACT (one payload byte short): no response; after the timeout the link is
        # idle again, nothing reached the array, and link_error tells.
        port.write(bytes([Op.ACT]) + bytes(range(1, link.act_len)))
        assert port.read(1) == b"", "a truncated command was answered"
        link.resync()
        status = link.status()
        assert status["link_error"] and not status["act_full"], status
        link.clear()
        ops = model.random_gemm(rng, (model.rows, model.m, model.cols))
        assert link.gemm(ops.a, ops.values, ops.indices).shape == \
            (model.rows, model.cols)
        return link.stats

    stats = await bridge(host)()
    for monitor in monitors.values():
        assert not monitor.protocol_errors, monitor.protocol_errors[:3]
    dut._log.info(f"protocol checks passed: {stats}")

