"""cocotb drivers for amaranth.lib.stream ports (`<name>__valid/__ready/__payload`).

Following the cocotbext-axi pattern: a source, a sink and a monitor per stream. Backpressure
and bubbles are pause generators: iterators of booleans, one per clock edge, True = pause
(the source withholds valid / the sink withholds ready).
"""
import itertools
import random
from collections import deque

import cocotb
from cocotb.triggers import Event, ReadOnly, RisingEdge

from .harness import cycle


def random_pauses(rng: random.Random, probability: float):
    """An endless pause pattern where each cycle pauses with `probability`."""
    while True:
        yield rng.random() < probability


def never_pause():
    return itertools.repeat(False)


class _StreamPort:
    def __init__(self, dut, name, clock, pause=None):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.name, self.clock = name, clock
        self.pause = pause if pause is not None else never_pause()

    def set_pause_generator(self, generator):
        self.pause = generator if generator is not None else never_pause()


class StreamSource(_StreamPort):
    """Drives payloads (ints) into an input stream, in order. A presented beat stays valid and
    unchanged until it transfers; pauses only delay the start of the next beat."""

    def __init__(self, dut, name, clock, pause=None):
        super().__init__(dut, name, clock, pause)
        self.queue = deque()
        self.sent = 0
        self.idle_event = Event()
        self.idle_event.set()
        self.valid.value = 0
        cocotb.start_soon(self._run())

    def send_nowait(self, payload: int):
        self.queue.append(payload)
        self.idle_event.clear()

    async def wait(self):
        """Until every queued payload has transferred."""
        await self.idle_event.wait()

    async def _run(self):
        current = None
        while True:
            await RisingEdge(self.clock)
            paused = next(self.pause)
            if current is None and self.queue and not paused:
                current = self.queue.popleft()
                self.payload.value = current
            self.valid.value = int(current is not None)
            await ReadOnly()
            if current is not None and self.ready.value == 1:
                self.sent += 1
                current = None
                if not self.queue:
                    self.idle_event.set()


class StreamSink(_StreamPort):
    """Accepts beats (ints) from an output stream; the pause generator withholds ready."""

    def __init__(self, dut, name, clock, pause=None):
        super().__init__(dut, name, clock, pause)
        self.queue = deque()
        self.ready.value = 0
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clock)
            self.ready.value = 0 if next(self.pause) else 1
            await ReadOnly()
            if self.valid.value == 1 and self.ready.value == 1:
                self.queue.append(int(self.payload.value))

    def count(self):
        return len(self.queue)

    async def wait_beats(self, count: int, bound: int, what: str = ""):
        """Until `count` beats have arrived; the watchdog: fails (AssertionError naming the stream,
        the cycle and `what` was awaited) when no beat arrives for `bound` cycles."""
        quiet, seen = 0, len(self.queue)
        while len(self.queue) < count:
            await RisingEdge(self.clock)
            quiet = 0 if len(self.queue) != seen else quiet + 1
            seen = len(self.queue)
            if quiet > bound:
                raise AssertionError(
                    f"watchdog: stream '{self.name}' stalled: no beat for {bound} cycles at cycle "
                    f"{cycle()} ({len(self.queue)} of {count} beats"
                    f"{' of ' + what if what else ''} received; valid={self.valid.value}, "
                    f"ready={self.ready.value})")


class StreamMonitor(_StreamPort):
    """Records every beat that transfers (cycle, payload) and any protocol violation: a valid
    beat withdrawn or changed before it transferred."""

    def __init__(self, dut, name, clock):
        super().__init__(dut, name, clock)
        self.beats = []
        self.cycle = 0
        self.protocol_errors = []
        cocotb.start_soon(self._run())

    async def _run(self):
        held = None
        while True:
            await RisingEdge(self.clock)
            await ReadOnly()
            self.cycle += 1
            valid, ready = self.valid.value == 1, self.ready.value == 1
            payload = int(self.payload.value) if valid else None
            if held is not None and payload != held:
                self.protocol_errors.append(f"{self.name}: beat withdrawn or changed at cycle {self.cycle}")
            if valid and ready:
                self.beats.append((self.cycle, payload))
            held = payload if valid and not ready else None
