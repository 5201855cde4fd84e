"""cocotb drivers for amaranth.lib.stream ports (`<name>__valid/__ready/__payload`).

Following the cocotbext-axi pattern: a source, a sink and a monitor per stream. Backpressure
and bubbles are pause generators: iterators of booleans, one per clock edge, True = pause
(the source withholds valid / the sink withholds ready).

Cost: a driver given a pause generator wakes twice every cycle (the edge, then the settled
values). Without pauses (`never_pause()` or None) a source and a sink only wake for beats: an
idle source sleeps until `send_nowait`, a source whose beat is refused sleeps until ready rises,
a sink sleeps until valid rises, so long simulations pay Python time per beat, not per cycle.
The transfers they see are the same cycle for cycle. StreamMonitor always wakes every cycle.
"""
import itertools
import random
from collections import deque

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, ReadOnly, RisingEdge

from .harness import cycle


def random_pauses(rng: random.Random, probability: float):
    """An endless pause pattern where each cycle pauses with `probability`."""
    while True:
        yield rng.random() < probability


_NEVER = itertools.repeat(False)


def never_pause():
    """No pauses: the drivers recognise it and skip the cycles in which nothing can transfer."""
    return _NEVER


class _StreamPort:
    def __init__(self, dut, name, clock, pause=None):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.name, self.clock = name, clock
        self.set_pause_generator(pause)

    def set_pause_generator(self, generator):
        self.pause = generator if generator is not None else _NEVER

    @property
    def _pausing(self):
        return self.pause is not _NEVER


class StreamSource(_StreamPort):
    """Drives payloads (ints) into an input stream, in order. A presented beat stays valid and
    unchanged until it transfers; pauses only delay the start of the next beat. `sent` counts
    transfers, `first_transfer` is the sim time (ns) of the first one (None before)."""

    def __init__(self, dut, name, clock, pause=None):
        super().__init__(dut, name, clock, pause)
        self.queue = deque()
        self.sent = 0
        self.first_transfer = None
        self.idle_event = Event()
        self.idle_event.set()
        self._queued = Event()
        self.valid.value = 0
        cocotb.start_soon(self._run())

    def send_nowait(self, payload: int):
        self.queue.append(payload)
        self.idle_event.clear()
        self._queued.set()

    async def wait(self):
        """Until every queued payload has transferred."""
        await self.idle_event.wait()

    async def _run(self):
        edge, settled, ready_rises = RisingEdge(self.clock), ReadOnly(), RisingEdge(self.ready)
        current = None
        while True:
            await edge
            paused = next(self.pause)
            if current is None and self.queue and not paused:
                current = self.queue.popleft()
                self.payload.value = current
            self.valid.value = int(current is not None)
            if current is None:
                if not self._pausing and not self.queue:
                    self._queued.clear()
                    await self._queued.wait()       # nothing to send until send_nowait
                continue
            await settled
            if not self._pausing:
                while self.ready.value != 1:         # refused: sleep until ready rises
                    await ready_rises
                    await settled
            if self.ready.value == 1:
                if self.first_transfer is None:
                    self.first_transfer = get_sim_time("ns")
                self.sent += 1
                current = None
                if not self.queue:
                    self.idle_event.set()


class StreamSink(_StreamPort):
    """Accepts beats (ints) from an output stream; the pause generator withholds ready. Records
    a protocol violation (a valid beat withdrawn or changed before it transferred)."""

    def __init__(self, dut, name, clock, pause=None):
        super().__init__(dut, name, clock, pause)
        self.queue = deque()
        self.protocol_errors = []
        self._wanted, self._reached = None, Event()
        self.ready.value = 0
        cocotb.start_soon(self._run())

    async def _run(self):
        edge, settled, valid_rises = RisingEdge(self.clock), ReadOnly(), RisingEdge(self.valid)
        held, ready = None, None
        while True:
            await edge
            if ready != (ready := 0 if next(self.pause) else 1):
                self.ready.value = ready
            await settled
            valid = self.valid.value == 1
            if not valid and not self._pausing:      # ready stays high: sleep until valid rises
                while self.valid.value != 1:
                    await valid_rises
                    await settled
                valid = True
            payload = int(self.payload.value) if valid else None
            if held is not None and payload != held:
                self.protocol_errors.append(f"{self.name}: beat withdrawn or changed at "
                                            f"{get_sim_time('ns')} ns")
            if valid and ready:
                self.queue.append(payload)
                if self._wanted is not None and len(self.queue) >= self._wanted:
                    self._reached.set()
            held = payload if valid and not ready else None

    def count(self):
        return len(self.queue)

    async def wait_count(self, count):
        """Until at least `count` beats have been accepted."""
        if len(self.queue) < count:
            self._wanted = count
            self._reached.clear()
            await self._reached.wait()

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
