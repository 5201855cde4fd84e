"""Register harness: place and time any block on a pin-limited device (no out-of-context mode).

A generated array has hundreds of I/O bits (``act__payload`` 129, ``result__payload`` 512 ...), far
more than a small package has pins (iCE40 UP5K SG48: 39), and nextpnr-ice40 cannot place a design
out of context.  `harness_verilog` writes a wrapper ``<top>_harness`` with only four ports::

    clk   the clock, connected straight to top's clock port (same name as top's clock port)
    rst   top's reset, connected straight from the pin (omitted when top has no reset port)
    din   1 bit: serial input
    dout  1 bit: serial output

* Every other input bit of ``top`` is driven by one flip-flop of a single serial-in shift register
  fed by ``din`` (``chain <= {chain, din}``): no input is constant, so nothing in ``top`` is optimized
  away, and every input path starts at a register (no logic in between, only routing).
* Every output bit of ``top`` is captured in a flip-flop (no logic in between), and the captured bits
  are folded into ``dout`` by a pipelined XOR tree: each stage XORs at most ``xor_fanin`` bits of the
  previous stage into a register (16 bits = 2 LUT4 levels), so every output bit is observable and the
  harness' own register-to-register paths are at most two LUT levels long: the harness is never the
  critical path of a real block.
* ``top`` is instantiated with ``(* keep_hierarchy *)``: Yosys keeps the boundary between harness
  and ``top`` even in flows that flatten (``synth_ice40``), so (a) no harness register is absorbed
  into ``top``'s cells (e.g. an ``SB_MAC16`` input/output register, a DSP pipeline register) and no
  knowledge of the environment leaks into ``top`` -- ``top`` is mapped exactly as it is out of
  context, as its own module -- and (b) the cells of ``top`` alone can be counted: they are the
  cells of its module in the synthesized netlist (`nmforge.fpga.report.count_cells` walked from
  ``top``, see `harness_instance_type`).  Placement and routing are still of the whole design, so
  Fmax is the whole design's: ``top``'s register-to-register paths, plus its input paths (from a
  chain register) and output paths (to a capture register), which out of context are not timed.

Reading ports: `harness_verilog` takes the list of ``{"name", "direction", "width"}`` dicts of a
generated block's ``manifest.json`` (``manifest["ports"]``) or the manifest itself;
`ports_from_verilog` reads the same list from Verilog text (Amaranth's non-ANSI ``input [N:0] x;``
declarations as well as ANSI headers ``input wire signed [7:0] a,``).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

__all__ = ["harness_verilog", "ports_from_verilog", "normalize_ports", "harness_instance_type",
           "HARNESS_INSTANCE", "DEFAULT_XOR_FANIN"]

HARNESS_INSTANCE = "u_top"  # instance name of top inside the harness
DEFAULT_XOR_FANIN = 16  # bits folded per XOR stage: 16 = two LUT4 levels (4 LUTs + 1 LUT)

_SIMPLE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_KEYWORDS = frozenset("""always and assign begin buf case casex casez default defparam disable edge else
end endcase endfunction endgenerate endmodule endtask event for force forever fork function generate
genvar if initial inout input integer join localparam module nand negedge nor not or output parameter
posedge reg repeat signed supply0 supply1 task time tri wait while wire xnor xor logic""".split())


def _vid(name: str) -> str:
    """``name`` as a Verilog identifier: plain when possible, else escaped (``\\a.b `` with a space)."""
    if _SIMPLE_ID.match(name) and name not in _KEYWORDS:
        return name
    if any(c.isspace() for c in name) or not name:
        raise ValueError(f"not a valid Verilog identifier: {name!r}")
    return f"\\{name} "


def _slice(vec: str, off: int, width: int) -> str:
    return f"{vec}[{off}]" if width == 1 else f"{vec}[{off + width - 1}:{off}]"


def normalize_ports(ports: Iterable[Mapping[str, Any]] | Mapping[str, Any]) -> list[dict[str, Any]]:
    """Validate a port list (or a manifest dict with a ``"ports"`` list) into ``[{name, direction, width}]``."""
    if isinstance(ports, Mapping):
        if "ports" not in ports:
            raise ValueError("expected a list of ports or a manifest with a 'ports' list")
        ports = ports["ports"]
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for p in ports:
        name, direction, width = p.get("name"), p.get("direction"), p.get("width", 1)
        if not isinstance(name, str) or not name:
            raise ValueError(f"port without a name: {p!r}")
        if direction not in ("input", "output"):
            raise ValueError(f"port {name!r}: direction must be 'input' or 'output', got {direction!r}")
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"port {name!r}: width must be a positive integer, got {width!r}")
        if name in seen:
            raise ValueError(f"duplicate port {name!r}")
        seen.add(name)
        out.append({"name": name, "direction": direction, "width": width})
    return out


def harness_verilog(ports: Iterable[Mapping[str, Any]] | Mapping[str, Any], top: str,
                    harness_name: str | None = None, *, clock: str = "clk", reset: str | None = "rst",
                    xor_fanin: int = DEFAULT_XOR_FANIN) -> str:
    """Verilog of the register harness ``harness_name`` (default ``<top>_harness``) around ``top``.

    ``ports`` lists every port of ``top`` (``{"name", "direction": "input"|"output", "width"}``, e.g.
    ``manifest["ports"]``, or the manifest itself).  ``clock`` is top's clock port (the harness' clock
    port has the same name); ``reset`` top's reset port, driven from a harness pin of the same name
    (``None``, or a name top does not have: no reset pin, every other input is chain-driven).
    ``xor_fanin`` (2..256) is the number of bits each pipelined XOR stage folds into one register.
    The harness ports are ``clock``, ``reset`` (if present), ``din`` and ``dout``.
    """
    plist = normalize_ports(ports)
    if not (2 <= int(xor_fanin) <= 256):
        raise ValueError(f"xor_fanin must be in 2..256, got {xor_fanin!r}")
    xor_fanin = int(xor_fanin)
    harness_name = harness_name or f"{top}_harness"
    by_name = {p["name"]: p for p in plist}
    clk_port = by_name.get(clock)
    if clk_port is not None and (clk_port["direction"] != "input" or clk_port["width"] != 1):
        raise ValueError(f"clock port {clock!r} must be a 1-bit input")
    rst_port = by_name.get(reset) if reset else None
    if rst_port is not None and (rst_port["direction"] != "input" or rst_port["width"] != 1):
        raise ValueError(f"reset port {reset!r} must be a 1-bit input")
    reserved = {"din", "dout"}
    if clock in reserved or (rst_port and reset in reserved):
        raise ValueError("the clock/reset port may not be named 'din' or 'dout'")

    inputs = [p for p in plist if p["direction"] == "input" and p is not clk_port and p is not rst_port]
    outputs = [p for p in plist if p["direction"] == "output"]
    if not outputs:
        raise ValueError(f"{top}: no output ports, nothing would survive synthesis")
    n_in = sum(p["width"] for p in inputs)
    n_out = sum(p["width"] for p in outputs)

    clk = _vid(clock)
    hdr_ports = [clk] + ([_vid(reset)] if rst_port else []) + ["din", "dout"]
    lines = [
        f"// Register harness of {top} (nmforge.fpga.harness): {n_in} input bits from a serial",
        f"// shift register fed by din, {n_out} output bits captured and folded into dout by a",
        f"// pipelined XOR tree ({xor_fanin} bits per stage). Every harness path is register to register.",
        f"module {_vid(harness_name)} ({', '.join(hdr_ports)});",
        f"  input {clk};",
    ]
    if rst_port:
        lines.append(f"  input {_vid(reset)};")
    lines += ["  input din;", "  output dout;", ""]

    # --- input chain: chain[0] <= din, chain[i] <= chain[i-1] -------------------------------------
    conns: list[str] = []
    if clk_port:
        conns.append(f".{clk}({clk})")
    if rst_port:
        conns.append(f".{_vid(reset)}({_vid(reset)})")
    if n_in:
        lines.append(f"  reg [{n_in - 1}:0] chain;")
        shift = "din" if n_in == 1 else f"{{chain[{n_in - 2}:0], din}}"
        lines.append(f"  always @(posedge {clk}) chain <= {shift};")
        off = 0
        for p in inputs:
            conns.append(f".{_vid(p['name'])}({_slice('chain', off, p['width'])})")
            off += p["width"]
    else:
        lines.append("  // top has no data inputs: din is unused")

    # --- output capture and XOR tree ----------------------------------------------------------
    lines.append(f"  wire [{n_out - 1}:0] q;")
    lines.append(f"  reg [{n_out - 1}:0] x0;  // capture registers, one per output bit")
    lines.append(f"  always @(posedge {clk}) x0 <= q;")
    off = 0
    for p in outputs:
        conns.append(f".{_vid(p['name'])}({_slice('q', off, p['width'])})")
        off += p["width"]
    width, stage = n_out, 0
    while width > 1:
        nxt = -(-width // xor_fanin)
        lines.append(f"  reg [{nxt - 1}:0] x{stage + 1};")
        lines.append(f"  always @(posedge {clk}) begin")
        for j in range(nxt):
            lo, hi = j * xor_fanin, min(width, (j + 1) * xor_fanin) - 1
            src = f"x{stage}[{lo}]" if lo == hi else f"^x{stage}[{hi}:{lo}]"
            lines.append(f"    x{stage + 1}[{j}] <= {src};")
        lines.append("  end")
        width, stage = nxt, stage + 1
    lines.append(f"  assign dout = x{stage}[0];")
    lines.append("")
    lines.append("  (* keep_hierarchy *)")
    lines.append(f"  {_vid(top)} {HARNESS_INSTANCE} (")
    lines.append(",\n".join(f"    {c}" for c in conns))
    lines.append("  );")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


# --- reading ports from Verilog ------------------------------------------------------------------

_ID = r"(?:\\\S+|[A-Za-z_][A-Za-z0-9_$]*)"
_RANGE = re.compile(r"\[\s*(-?\d+)\s*:\s*(-?\d+)\s*\]")
_DIR_WORDS = ("input", "output", "inout")
_TYPE_WORDS = {"wire", "reg", "logic", "signed", "unsigned", "var", "tri", "integer"}


def _strip_comments_attrs(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r"\(\*.*?\*\)", " ", text, flags=re.S)


def _ident(name: str) -> str:
    return name[1:] if name.startswith("\\") else name


def _parse_decl(decl: str, state: dict[str, Any] | None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Parse ``[direction] [type] [range] name {, name}`` (one ANSI entry or one body declaration)."""
    tokens = decl.strip()
    m = re.match(r"(input|output|inout)\b", tokens)
    if m:
        direction = m.group(1)
        rest = tokens[m.end():]
        width = 1
        rng = _RANGE.search(rest)
        if rng:
            if re.search(r"\[[^\]]*\]\s*\[", rest):
                raise ValueError(f"multi-dimensional port not supported: {decl.strip()!r}")
            width = abs(int(rng.group(1)) - int(rng.group(2))) + 1
            rest = rest[:rng.start()] + " " + rest[rng.end():]
        elif "[" in rest:
            raise ValueError(f"port range is not a pair of integers: {decl.strip()!r}")
        if re.search(r"\binteger\b", rest):
            width = 32
        state = {"direction": direction, "width": width}
        names_txt = rest
    else:
        if state is None:
            return [], None  # non-ANSI header entry: a bare name, declared in the body
        names_txt = tokens
    names = []
    for word in re.findall(_ID, names_txt):
        if word in _TYPE_WORDS:
            continue
        names.append(_ident(word))
    if state and state["direction"] == "inout" and names:
        raise ValueError(f"inout port {names[0]!r} is not supported by the harness")
    return [{"name": n, "direction": state["direction"], "width": state["width"]} for n in names], state


def ports_from_verilog(verilog_text: str, module: str) -> list[dict[str, Any]]:
    """Every port ``{name, direction, width}`` of ``module`` in Verilog text, in header order.

    Handles non-ANSI headers with body declarations (``input [128:0] act__payload;``, as Amaranth
    emits) and ANSI headers (``input wire signed [7:0] a, b,``); port ranges must be integer
    constants.  ``ValueError`` when the module is missing or a port's width cannot be read.
    """
    text = _strip_comments_attrs(verilog_text)
    name_re = re.escape("\\" + module) + r"\s" if not _SIMPLE_ID.match(module) else re.escape(module) + r"\b"
    m = re.search(r"\bmodule\s+" + name_re + r"\s*(#\s*\(.*?\)\s*)?\(", text, flags=re.S)
    if not m:
        raise ValueError(f"module {module!r} not found in the Verilog text")
    # header: up to the matching parenthesis
    depth, i = 1, m.end()
    while i < len(text) and depth:
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    header = text[m.end():i - 1]
    end = re.search(r"\bendmodule\b", text[i:])
    body = text[i:i + end.start()] if end else text[i:]

    order: list[str] = []
    found: dict[str, dict[str, Any]] = {}
    state = None
    for entry in header.split(","):
        entry = entry.strip()
        if not entry:
            continue
        decl, state = _parse_decl(entry, state)
        if decl:
            for p in decl:
                found[p["name"]] = p
                order.append(p["name"])
        else:
            word = re.findall(_ID, entry)
            if word:
                order.append(_ident(word[-1]))
    for stmt in body.split(";"):
        stmt = stmt.strip()
        if stmt.startswith(_DIR_WORDS):
            for p in _parse_decl(stmt, None)[0]:
                found[p["name"]] = p
    missing = [n for n in order if n not in found]
    if missing:
        raise ValueError(f"module {module!r}: no direction/width declaration for port(s) {missing}")
    return [found[n] for n in order]


def harness_instance_type(netlist: Mapping[str, Any], harness_name: str) -> str:
    """The module type of ``top``'s instance inside the harness module of a Yosys JSON netlist."""
    modules = netlist.get("modules", {})
    if harness_name not in modules:
        raise ValueError(f"harness module {harness_name!r} is not in the netlist")
    cells = modules[harness_name].get("cells", {})
    for name, cell in cells.items():
        if name == HARNESS_INSTANCE or name.endswith("\\" + HARNESS_INSTANCE):
            return cell["type"]
    raise ValueError(f"instance {HARNESS_INSTANCE!r} of the harness was flattened or removed "
                     f"(is keep_hierarchy honoured?)")
