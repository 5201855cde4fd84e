"""Pack the flip-flops behind ECP5 block RAM read ports into the DP16KD output registers (a
netlist pass Yosys lacks for ECP5).

Yosys maps a memory's synchronous read port onto a DP16KD with its output register off (REGMODE
NOREG): nextpnr times the block's clock-to-out as 5.8 ns, so a design that puts every read into a
register before any logic (rtl.banked_memory.READ_LATENCY) has the rest of a cycle to route the
data to that flip-flop, wherever the placer put it (the accelerators' critical paths on the
LFE5U-85F). This pass moves those flip-flops into the block (REGMODE OUTREG, as vendor tools
do), after which the block's clock-to-out is that of its output register.

A read port is packed when each of its data pins that drives anything drives exactly one load,
the D input of a TRELLIS_FF clocked by the port's clock that powers up at 0, all with the same
clock enable (none, or one net, which then drives the port's output clock enable OCE) and the
same reset (none, or one synchronous reset to 0 over the enable, which then drives the port's
RST with RESETMODE SYNC: the output register's own reset), and each of those flip-flops drives
only flip-flops, LUT RAM or carry chains (DIRECT_LOADS). That last rule keeps a read register in
the fabric when LUT logic follows it: placed between a block and the logic that gathers several
blocks' data (the OUT buffer's lane rotation), it gives the routing from the blocks a cycle of
its own, and moving it into the blocks made the 4x4 accelerator slower (117.0 instead of
127.9 MHz, measured). A
36-bit port (DATA_WIDTH_A = 36: pseudo-dual-port, as Yosys maps it) reads on both halves' pins
(DOA, DOB), clocked by CLKB; its output registers are enabled on both halves. Nothing is added,
only moved, so the cycle behaviour (and the read latency) is unchanged.
"""

from .dsp_pack import connectivity, count_flip_flops, placements

# What a packed read register may drive: flip-flops, LUT RAM writes, carry chains (an adder's
# one macro); not LUT logic, which may gather the data of several blocks.
DIRECT_LOADS = ("TRELLIS_FF", "TRELLIS_DPR16X4", "CCU2C")


def pack_bram_output_registers(netlist: dict) -> dict:
    """Rewrite `netlist` (Yosys JSON, all modules) in place; returns counts of what moved in the
    placed design (a module instantiated k times counts k times)."""
    stats = {"bram_read_ports": 0, "output_registers": 0, "flip_flops_removed": 0}
    copies_of = placements(netlist)
    for module_name, module in netlist["modules"].items():
        cells = module.get("cells", {})
        brams = [name for name, cell in cells.items() if cell["type"] == "DP16KD"]
        if not brams:
            continue
        copies = copies_of[module_name]
        flip_flops_before = count_flip_flops(module)
        _, loads = connectivity(module)   # kept current by _pack_port (one scan per module)
        for name in brams:
            for halves, clock_pin in _read_ports(cells[name]):
                stats["bram_read_ports"] += copies
                if _pack_port(cells, name, halves, clock_pin, loads):
                    stats["output_registers"] += copies
        stats["flip_flops_removed"] += copies * (flip_flops_before - count_flip_flops(module))
    return stats


def _read_ports(bram):
    """(halves, clock pin) of each read port of a DP16KD: one 36-bit port on both halves, else
    one per half."""
    if _integer(bram.get("parameters", {}).get("DATA_WIDTH_A", 0)) == 36:
        return [(("A", "B"), "CLKB")]
    return [(("A",), "CLKA"), (("B",), "CLKB")]


def _integer(value):
    """An integer parameter of a Yosys JSON netlist (written as a 32-character bit string)."""
    text = str(value)
    return int(text, 2) if len(text) == 32 and set(text) <= {"0", "1"} else int(text)


def _register_controls(flip_flop, clock):
    """(clock enable, synchronous reset), each "1"/"0" or a net, of a TRELLIS_FF clocked by
    `clock` that resets (if at all) synchronously to 0 over its enable and powers up at 0;
    None for any other cell."""
    if flip_flop["type"] != "TRELLIS_FF":
        return None
    params, conn = flip_flop.get("parameters", {}), flip_flop["connections"]
    if params.get("CLKMUX", "CLK") != "CLK" or conn.get("CLK") != [clock]:
        return None
    if params.get("REGSET", "RESET") != "RESET" or params.get("LSRMUX", "LSR") != "LSR":
        return None
    reset = conn.get("LSR", ["0"])[0]
    if reset != "0" and not (isinstance(reset, int) and params.get("SRMODE") == "LSR_OVER_CE"):
        return None
    enable_mux = params.get("CEMUX", "1").strip()
    if enable_mux == "1":
        return "1", reset
    if enable_mux == "CE" and isinstance(conn.get("CE", ["1"])[0], int):
        return conn["CE"][0], reset
    return None


def _users(cells, loads, bit):
    """The loads of `bit`: `loads` entries of cells that still take it (packing deletes
    flip-flops without rescanning the module)."""
    return [(name, port) for name, port in loads.get(bit, [])
            if name is None or (name in cells and bit in cells[name]["connections"].get(port, []))]


def _drives_direct_loads_only(cells, flip_flop, loads):
    """The flip-flop's output drives only DIRECT_LOADS (no LUT logic, no module port)."""
    users = _users(cells, loads, flip_flop["connections"]["Q"][0])
    return bool(users) and all(name is not None and cells[name]["type"] in DIRECT_LOADS
                               for name, _ in users)


def _pack_port(cells, bram_name, halves, clock_pin, loads):
    """Move the port's flip-flops into the block; False (nothing changed) when not packable.
    Data pins whose nets have no load are left as they are. `loads` gains the block's new
    enable and reset inputs."""
    bram = cells[bram_name]
    params, conn = bram.setdefault("parameters", {}), bram["connections"]
    if any(params.get(f"REGMODE_{half}", "NOREG") != "NOREG" for half in halves):
        return False
    pins = [(pin, bits[0]) for pin, bits in conn.items()
            if pin[:3] in {f"DO{half}" for half in halves} and isinstance(bits[0], int)
            and _users(cells, loads, bits[0])]
    clock = conn.get(clock_pin, [None])[0]
    if not pins or not isinstance(clock, int):
        return False
    flip_flops, controls = {}, set()
    for pin, bit in pins:
        users = _users(cells, loads, bit)
        if len(users) != 1 or users[0][0] is None or users[0][1] != "DI":
            return False
        control = _register_controls(cells[users[0][0]], clock)
        if control is None or not _drives_direct_loads_only(cells, cells[users[0][0]], loads):
            return False
        flip_flops[pin] = users[0][0]
        controls.add(control)
    if len(controls) != 1:
        return False
    enable, reset = controls.pop()
    for pin, name in flip_flops.items():
        conn[pin] = cells[name]["connections"]["Q"]
        del cells[name]
    directions = bram.setdefault("port_directions", {})
    for half in halves:
        params[f"REGMODE_{half}"] = "OUTREG"
        controls = {f"OCE{half}": enable, **({f"RST{half}": reset} if reset != "0" else {})}
        for pin, net in controls.items():
            conn[pin], directions[pin] = [net], "input"
            if isinstance(net, int):
                loads.setdefault(net, []).append((bram_name, pin))
    if reset != "0":
        params["RESETMODE"] = "SYNC"
    return True
