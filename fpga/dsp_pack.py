"""Pack registers into ECP5 MULT18X18D blocks (a netlist pass Yosys lacks for ECP5).

Yosys maps a multiply onto a MULT18X18D with every internal register off, so nextpnr times the
block as a 3.9 ns combinational path between fabric flip-flops in other tiles. This pass moves
those flip-flops into the block, as vendor tools do:
  input side:  when every A (or B) pin is driven by a plain flip-flop (or a constant), the pin is
               rewired to the flip-flop's D net and the block's input register is enabled;
A packable flip-flop is a TRELLIS_FF with no clock enable, clocked like the others on its side,
and either without set/reset or with a synchronous reset to 0 (LSR over CE, REGSET=RESET) shared
by the others: that reset drives the block's reset pin of that side (A: RST0, B: RST1) with
RESETMODE=SYNC.
  output side: when every P pin that drives anything drives exactly one load, the D input of a
               packable flip-flop, and all those flip-flops share one clock and reset, they become
               the block's output register: each P pin drives the flip-flop's output net.
Nothing is added, only moved, so the cycle behaviour (and the latency) is unchanged; flip-flops
left without loads are deleted. With both sides registered the multiply itself runs between the
block's own registers (nextpnr's MULT18X18D_REGS_ALL timing class, from the vendor's database),
as in vendor flows; nextpnr times its inputs' setup and its output's clock-to-out, so the routes
from and to the block each get a whole cycle. The block's registers are always enabled (CE0 = 1),
as the flip-flops they replace were.
"""

from .report import _truthy

WIDTH = {"A": 18, "B": 18}
REGISTER_PARAMS = {"A": "REG_INPUTA", "B": "REG_INPUTB", "P": "REG_OUTPUT"}
RESET_PIN = {"A": "RST0", "B": "RST1", "P": "RST2"}  # one reset pin per side: each keeps its own
PRODUCT_PINS = 36


def pack_mult_registers(netlist: dict) -> dict:
    """Rewrite `netlist` (Yosys JSON, all modules) in place; returns counts of what moved in the
    placed design (a module instantiated k times counts k times)."""
    stats = {"mult_blocks": 0, "input_registers": 0, "output_registers": 0, "flip_flops_removed": 0}
    copies_of = placements(netlist)
    for module_name, module in netlist["modules"].items():
        cells = module.get("cells", {})
        mults = [name for name, cell in cells.items() if cell["type"] == "MULT18X18D"]
        if not mults:
            continue
        copies = copies_of[module_name]
        flip_flops_before = count_flip_flops(module)
        _, loads = connectivity(module)  # P loads: unchanged by other blocks' output packing
        for name in mults:
            if _pack_output(cells, name, loads):
                stats["output_registers"] += copies
        drivers, _ = connectivity(module)  # after output packing; input packing moves no driver
        for name in mults:
            stats["mult_blocks"] += copies
            for side in ("A", "B"):
                if _pack_input(cells, cells[name], side, drivers):
                    stats["input_registers"] += copies
        _remove_unloaded_flip_flops(module)
        stats["flip_flops_removed"] += copies * (flip_flops_before - count_flip_flops(module))
    return stats


def placements(netlist):
    """Module name -> how many times the module is placed under the top module (every module
    once when no module is marked top)."""
    modules = netlist["modules"]
    tops = [name for name, module in modules.items() if _truthy(module.get("attributes", {}).get("top", 0))]
    if not tops:
        return dict.fromkeys(modules, 1)
    counts = dict.fromkeys(modules, 0)

    def walk(name, copies):
        counts[name] += copies
        for cell in modules[name].get("cells", {}).values():
            if cell["type"] in modules:
                walk(cell["type"], copies)

    for top in tops:
        walk(top, 1)
    return counts


def count_flip_flops(module):
    return sum(cell["type"] == "TRELLIS_FF" for cell in module.get("cells", {}).values())


def connectivity(module):
    """bit -> (cell, port) of its driver, and bit -> [(cell, port)] of its loads; module ports
    count as loads (outputs) and drivers (inputs) under the cell name None."""
    drivers, loads = {}, {}
    for name, cell in module.get("cells", {}).items():
        directions = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            for bit in bits:
                if isinstance(bit, int):
                    if directions.get(port) == "output":
                        drivers[bit] = (name, port)
                    else:
                        loads.setdefault(bit, []).append((name, port))
    for port in module.get("ports", {}).values():
        for bit in port["bits"]:
            if isinstance(bit, int):
                if port["direction"] == "input":
                    drivers[bit] = (None, None)
                else:
                    loads.setdefault(bit, []).append((None, None))
    return drivers, loads


def _plain_flip_flop(cell):
    """(clock bit, synchronous reset bit or "0") of a packable TRELLIS_FF, else None."""
    if cell["type"] != "TRELLIS_FF":
        return None
    params, conn = cell.get("parameters", {}), cell["connections"]
    if params.get("CEMUX", "").strip() not in ("1", "") or params.get("CLKMUX", "CLK") != "CLK":
        return None
    if conn.get("CE", ["1"]) != ["1"]:
        return None
    reset = conn.get("LSR", ["0"])[0]
    if reset != "0" and not (params.get("SRMODE") == "LSR_OVER_CE" and params.get("REGSET") == "RESET"
                             and params.get("LSRMUX", "LSR") == "LSR"):
        return None
    return conn["CLK"][0], reset


def _pack_output(cells, name, loads):
    mult = cells[name]
    conn = mult["connections"]
    if mult.get("parameters", {}).get("REG_OUTPUT_CLK", "NONE") != "NONE":
        return False
    registers, controls = {}, set()
    for i in range(PRODUCT_PINS):
        bits = conn.get(f"P{i}", [None])
        if not isinstance(bits[0], int) or not loads.get(bits[0]):
            continue
        (load, port), *others = loads[bits[0]]
        control = _plain_flip_flop(cells[load]) if load is not None and port == "DI" and not others else None
        if control is None:
            return False
        registers[i] = load
        controls.add(control)
    if len(controls) != 1 or not _enable_register(mult, "P", *controls.pop()):
        return False
    for i, register in registers.items():
        conn[f"P{i}"] = cells.pop(register)["connections"]["Q"]
    return True


def _enable_register(mult, side, clock, reset):
    conn = mult["connections"]
    if conn.get("CLK0", [clock]) != [clock]:
        return False  # nextpnr times every MULT18X18D register from CLK0
    prefix, reset_pin = REGISTER_PARAMS[side], RESET_PIN[side]
    params = mult.setdefault("parameters", {})
    params[f"{prefix}_CLK"], params[f"{prefix}_CE"], params[f"{prefix}_RST"] = "CLK0", "CE0", reset_pin
    params["RESETMODE"] = "SYNC"
    conn["CLK0"], conn["CE0"], conn[reset_pin] = [clock], ["1"], [reset]
    mult.setdefault("port_directions", {}).update({"CLK0": "input", "CE0": "input", reset_pin: "input"})
    return True


def _pack_input(cells, mult, side, drivers):
    conn = mult["connections"]
    if mult.get("parameters", {}).get(f"{REGISTER_PARAMS[side]}_CLK", "NONE") != "NONE":
        return False
    sources, clocks = {}, set()
    for i in range(WIDTH[side]):
        bits = conn.get(f"{side}{i}", ["0"])
        if not isinstance(bits[0], int):
            continue
        driver, port = drivers.get(bits[0], (None, None))
        control = _plain_flip_flop(cells[driver]) if driver is not None and port == "Q" else None
        if control is None:
            return False
        sources[i] = cells[driver]["connections"]["DI"][0]
        clocks.add(control)
    if len(clocks) != 1 or not _enable_register(mult, side, *clocks.pop()):
        return False
    for i, d_bit in sources.items():
        conn[f"{side}{i}"] = [d_bit]
    return True


def _remove_unloaded_flip_flops(module):
    """Delete flip-flops whose output no longer drives anything."""
    while True:
        _, loads = connectivity(module)
        dead = [name for name, cell in module["cells"].items()
                if cell["type"] == "TRELLIS_FF" and not loads.get(cell["connections"]["Q"][0])]
        if not dead:
            break
        for name in dead:
            del module["cells"][name]
