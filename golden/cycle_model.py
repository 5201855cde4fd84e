"""Cycle model of the accelerator (rtl.accelerator): predicts the cycles of a command list from
the design's shape, without simulating it. It follows the RTL's rules, with no stalls on the
streams (data-in always valid, data-out always ready):

- controller: a command is taken, then decoded, sized and checked (control_cycles: a GEMM's
  range products take product_steps more); a refused one is dropped; an accepted one is
  dispatched when its unit is free (with `wait`: all units), as seen BUSY_SEEN cycles late,
  and its unit starts the cycle after, when the next command is taken;
- LOAD: one data-in word and at most one buffer word per cycle: max(stream words, words) + 3
  cycles from its start until the unit is free;
- GEMM: the feeder streams one beat per cycle from 4 cycles after the start (6 with run-time
  patterns: their activation windows are cut in two registered steps); a tile's last beat
  waits while `result_depth` + 1 tiles are admitted and not yet drained; each tile's results
  appear `array_latency` cycles after its last beat; the drain takes one result row per cycle
  (R cycles per tile), tiles starting at least rtl.execute.tile_drain_cycles apart; the unit
  is free DRAIN_TAIL cycles after the last tile's last row, with `to_act` once the chained
  writer has written that tile's ACT words (one per cycle);
- STORE: one data-out stream word per cycle, free (stream words) + STORE_TAIL cycles after its
  start.
The dataflow enters only through the GEMM timing (feeder start, latency, drain), so another
dataflow's feeder brings its own `gemm_cycles`.
"""
from dataclasses import dataclass

from ..rtl.accelerator import control_cycles   # take -> dispatch
from ..rtl.execute import WINDOW_LATENCY, chain_words, tile_drain_cycles
from ..rtl.output_stage import LATENCY as STAGE_LATENCY
from ..rtl.isa import Error, Opcode, UNIT_OF, Unit, check, decode, encode

FEED_DELAY = 4        # start -> first array beat (+ WINDOW_LATENCY with run-time patterns)
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
    beat = FEED_DELAY + (WINDOW_LATENCY if shape.runtime else 0) - 1
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


def gemm_cycles_ws(shape, rows, col_panels, groups, array_latency, result_depth=None):
    """Cycles from a GEMM's start until the weight-stationary execute unit (rtl.execute_ws) is
    free: a cycle-stepped replay of its rules. One read slot per cycle in the order block,
    column panel, K-block (a weight tile, then the block's rows), each slot waiting for room in
    its FIFO and a row also for fewer beats in flight than its block has rows (unless the GEMM
    has one K-block); reads reach the FIFO READ_LATENCY cycles later; the array takes a tile
    into its shadow registers when they are free ((R-1)*hop+C cycles after the tile before went
    into use), a row beat whenever the FIFO has one (a `first` beat only with a tile loaded), and
    returns its sums `array_latency` cycles later, every one taken at once."""
    from ..rtl.banked_memory import READ_LATENCY
    from ..rtl.execute_ws import ACT_FIFO_DEPTH, WEIGHT_FIFO_DEPTH
    block, settle = shape.acc_rows, (shape.beat_groups - 1) * shape.ws_hop + shape.cols - 1
    slots = []
    for first_row in range(0, rows, block):
        height = min(block, rows - first_row)
        for _ in range(col_panels):
            for _ in range(groups):
                slots.append((True, False, height))
                slots += [(False, i == 0, height) for i in range(height)]
    weights, acts = [], []            # FIFO entries: the cycle each can be read
    w_credits, a_credits = WEIGHT_FIFO_DEPTH, ACT_FIFO_DEPTH
    pending = 0
    returns = {}                      # cycle -> results returned then
    shadow_full, settling = False, 0
    next_slot, taken, last_return = 0, 0, 0
    cycle = 1                         # the unit's first slot: the cycle after its start
    results = sum(1 for tile, _, _ in slots if not tile)
    while taken < results:
        w_pop = a_pop = 0
        if next_slot < len(slots):
            tile, first, height = slots[next_slot]
            if tile and w_credits:
                weights.append(cycle + READ_LATENCY + 1)
                w_credits -= 1
                next_slot += 1
            elif not tile and a_credits and (groups == 1 or pending < height):
                acts.append((cycle + READ_LATENCY + 1, first))
                a_credits -= 1
                pending += 1
                next_slot += 1
        beat_first = False
        if weights and weights[0] <= cycle and not shadow_full and settling == 0:
            weights.pop(0)
            w_pop, shadow_full = 1, True
            load_now = True
        else:
            load_now = False
        if acts and acts[0][0] <= cycle and (not acts[0][1] or (shadow_full and not load_now)):
            _, beat_first = acts.pop(0)
            a_pop = 1
            returns[cycle + array_latency] = returns.get(cycle + array_latency, 0) + 1
        done = returns.pop(cycle, 0)
        if done:
            taken += done
            pending -= done
            last_return = cycle
        w_credits += w_pop
        a_credits += a_pop
        if beat_first:
            shadow_full, settling = False, settle
        elif settling:
            settling -= 1
        cycle += 1
    return last_return + DRAIN_TAIL


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
            cycles_of = gemm_cycles_ws if shape.dataflow == "weight_stationary" else gemm_cycles
            end = start + cycles_of(shape, rp, cp, groups, array_latency, result_depth)
            if f["to_act"]:   # then the chained writer's ACT words of the last tile
                end += chain_words(shape.cols, shape.k_group, (cp - 1) * shape.cols % shape.k_group)
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
