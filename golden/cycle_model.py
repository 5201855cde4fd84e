"""Cycle model of the accelerator (rtl.accelerator): predicts the cycles of a command list from
the design's shape, without simulating it. It follows the RTL's rules, with no stalls on the
streams (data-in always valid, data-out always ready):

- controller: a command is taken, then decoded, sized and checked (control_cycles: a GEMM's
  range products take product_steps more); a refused one is dropped; an accepted one is
  dispatched when its unit is free (with `wait`: all units), as seen BUSY_SEEN cycles late,
  and its unit starts the cycle after, when the next command is taken;
- LOAD: one data-in word and at most one buffer word per cycle: max(stream words, words) + 3
  cycles from its start until the unit is free;
- GEMM: the feeder streams one beat per cycle from 4 cycles after the start; a tile's last beat
  waits while `result_depth` + 1 tiles are admitted and not yet drained; each tile's results
  appear `array_latency` cycles after its last beat; the drain takes one result row per cycle
  (R cycles per tile), tiles starting at least rtl.execute.tile_drain_cycles apart; the unit
  is free DRAIN_TAIL cycles after the last tile's last row;
- STORE: one data-out stream word per cycle, free (stream words) + STORE_TAIL cycles after its
  start.
The dataflow enters only through the GEMM timing (feeder start, latency, drain), so another
dataflow's feeder brings its own `gemm_cycles`.
"""
from dataclasses import dataclass

from ..rtl.accelerator import control_cycles   # take -> dispatch
from ..rtl.execute import tile_drain_cycles
from ..rtl.output_stage import LATENCY as STAGE_LATENCY
from ..rtl.isa import Error, Opcode, UNIT_OF, Unit, check, decode, encode

FEED_DELAY = 4        # start -> first array beat
DRAIN_TAIL = STAGE_LATENCY + 3  # last row taken -> execute unit free (the output stages + 3)
STORE_TAIL = 4
LOAD_TAIL = 3
BUSY_SEEN = 1   # a unit's busy flag reaches the controller's dispatch a cycle late
START_DELAY = 1   # dispatch -> the unit's start (a register)


def _ceil(a, b):
    return -(-a // b)


@dataclass
class CommandTiming:
    index: int
    opcode: str
    start: int | None      # cycle its unit started (None: refused or NOP)
    end: int               # cycle its unit is free again
    beats: int = 0         # array beats (GEMM)


def gemm_cycles(shape, row_panels, col_panels, groups, array_latency, result_depth):
    """Cycles from a GEMM's start until the execute unit is free (output-stationary array)."""
    tiles = row_panels * col_panels
    spacing = tile_drain_cycles(shape.rows, shape.cols, shape.k_group)
    drained = []          # cycle each tile's last row is taken
    beat = FEED_DELAY - 1
    begin = None
    for t in range(tiles):
        last = beat + groups
        if t - result_depth - 1 >= 0:
            last = max(last, drained[t - result_depth - 1] + 1)
        beat = last
        ready = last + array_latency
        begin = ready if begin is None else max(ready, begin + spacing)
        drained.append(begin + shape.rows - 1)
    return drained[-1] + DRAIN_TAIL


def predict(shape, commands, array_latency, result_depth):
    """Per-command timing and the totals of a program: {"cycles": from taking the first command
    until every unit is idle, "array_beats", "utilization" (array beats / cycles), "commands":
    [CommandTiming]}."""
    free = {Unit.LOAD: 0, Unit.EXECUTE: 0, Unit.STORE: 0}
    take = 0
    timings = []
    beats_total = 0
    for index, command in enumerate(commands):
        fields = decode(encode(command))
        ready = take + control_cycles(shape, fields["opcode"])
        if check(fields, shape) != Error.NONE:
            timings.append(CommandTiming(index, "refused", None, ready))
            take = ready
            continue
        opcode = fields["opcode"]
        unit = UNIT_OF[opcode]
        start = ready
        if unit != Unit.NONE:
            start = max(start, free[unit] + BUSY_SEEN)
        if fields["wait"]:
            start = max(start, *(end + BUSY_SEEN for end in free.values()))
        start += START_DELAY
        beats = 0
        if opcode == Opcode.LOAD:
            f = fields["load"]
            end = start + max(shape.stream_words(f["buffer"], f["count"]), f["count"]) + LOAD_TAIL
        elif opcode == Opcode.GEMM:
            f = fields["gemm"]
            rp, cp = _ceil(f["m"], shape.rows), _ceil(f["n"], shape.cols)
            groups = f["k"] // shape.span(f["pattern"])
            beats = rp * cp * groups
            end = start + gemm_cycles(shape, rp, cp, groups, array_latency, result_depth)
        elif opcode == Opcode.STORE:
            f = fields["store"]
            end = start + shape.store_stream_words(f["count"], f["wide"]) + STORE_TAIL
        else:
            end = start
        if unit != Unit.NONE:
            free[unit] = end
        beats_total += beats
        timings.append(CommandTiming(index, opcode.name, start, end, beats))
        take = start
    cycles = max([take, *free.values()])
    return {"cycles": cycles, "array_beats": beats_total,
            "utilization": beats_total / cycles if cycles else 0.0, "commands": timings}
