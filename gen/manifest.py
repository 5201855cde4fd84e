"""The manifest: everything a user or a testbench needs to drive a generated block.

Payload layouts are described as plain JSON trees so that consumers (the cocotb testbenches,
host software) can pack and unpack port bits without importing Amaranth:
  {"kind": "int", "width": w, "signed": bool}
  {"kind": "array", "length": n, "stride": bits, "element": <layout>}       element i at i*stride
  {"kind": "struct", "width": w, "fields": {name: {"offset": o, "layout": <layout>}}}
"""
import hashlib
import re

from amaranth import Shape
from amaranth.lib import data, stream, wiring

from .. import __version__
from ..golden.nm import (beat_span, pattern_id_bits, pattern_name, runtime_index_bits,
                         runtime_patterns, runtime_window)
from .elaborate import find_mac, mac_parameters
from .semantics import RESET_CYCLES_MIN, runtime_pattern_table, semantics

PORT_DECLARATION = re.compile(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s*)?(\w+);", re.M)
STREAM_PROTOCOL = ("amaranth.lib.stream: a beat transfers on a rising clock edge where valid and "
                   "ready are both high; valid never waits for ready; payload is stable while valid")


def describe_layout(shape) -> dict:
    """JSON description of an Amaranth shape or data layout (see module docstring)."""
    if isinstance(shape, data.ArrayLayout):
        element = describe_layout(shape.elem_shape)
        stride = Shape.cast(shape.elem_shape).width
        return {"kind": "array", "length": shape.length, "stride": stride, "element": element}
    if isinstance(shape, data.StructLayout):
        fields = {name: {"offset": field.offset, "layout": describe_layout(field.shape)}
                  for name, field in shape}
        return {"kind": "struct", "width": shape.size, "fields": fields}
    shape = Shape.cast(shape)
    return {"kind": "int", "width": shape.width, "signed": shape.signed}


def describe_interfaces(component) -> dict:
    """Every top-level member of a component: streams with their payload layout, plain ports with
    their layout (so a testbench can drive a PE's or decoder's ports the same way)."""
    interfaces = {}
    for name, member in component.signature.members.items():
        direction = "in" if member.flow == wiring.In else "out"
        if member.is_signature and isinstance(member.signature, stream.Signature):
            interfaces[name] = {"kind": "stream", "direction": direction,
                                "payload": describe_layout(member.signature.members["payload"].shape)}
        elif member.is_port:
            interfaces[name] = {"kind": "port", "direction": direction,
                                "layout": describe_layout(member.shape)}
    return interfaces


def verilog_ports(verilog_text, module) -> list:
    """Every port (name, direction, width) of `module`, read from the generated Verilog."""
    body = re.search(rf"^module {re.escape(module)}\(.*?^endmodule", verilog_text, re.M | re.S)
    return [{"name": name, "direction": direction, "width": int(msb) + 1 if msb else 1}
            for direction, msb, name in PORT_DECLARATION.findall(body.group(0))]


def runtime_parameters(config) -> dict:
    """A run-time design's pattern facts: `patterns` (names; the position is the pattern id),
    the activation `window` per row and beat, the id and index widths, and per pattern the
    K-elements one beat covers (`beat_span`)."""
    table = runtime_patterns(config.n, config.m)
    return {"patterns": [pattern_name(p) for p in table],
            "beat_span": {pattern_name(p): beat_span(p, config.n) for p in table},
            "window": runtime_window(config.n, config.m),
            "pattern_bits": pattern_id_bits(config.n, config.m),
            "index_bits": runtime_index_bits(config.m),
            "pattern_table": runtime_pattern_table(config)}


def accelerator_section(component) -> dict:
    """The accelerator's contract (rtl.isa): its shape (AcceleratorShape fields, the form the
    golden executor and cycle model take), buffer word widths, the command and PARAM layouts,
    opcodes and error codes, and its AXI4-Stream interfaces."""
    from ..rtl import isa
    from ..rtl.accelerator import control_cycles
    shape = component.shape
    return {
        "shape": shape.to_dict(),
        "word_bits": {b.name: shape.word_bits(b) for b in isa.Buffer},
        "command_layout": describe_layout(isa.Command.as_shape()),
        "param_layout": describe_layout(isa.Requant.as_shape()),
        "opcodes": {op.name: op.value for op in isa.Opcode},
        "buffers": {b.name: b.value for b in isa.Buffer},
        "errors": {e.name: e.value for e in isa.Error},
        "control_cycles": {op.name: control_cycles(shape, op) for op in isa.Opcode},
        "array_latency": component.array.latency,
        "result_depth": component.array.result_depth,
        "axis": {"s_axis_cmd": isa.COMMAND_BITS, "s_axis_data": shape.stream_width,
                 "m_axis_data": shape.stream_width},
    }


def build_manifest(config, block, component, module, verilog_text) -> dict:
    """The manifest of one generated block.

    `parameters` holds the array geometry (`tile_rows` x cols outputs per tile, `beat_groups`
    K-groups per PE and beat: rows x cols and 1 output-stationary, 1 x cols and rows
    dot-product and weight-stationary), the metadata encoding (`encoding`: "index" or
    "bitmap"), whether patterns are chosen at run time (`runtime`; then also
    `runtime_parameters`), the PE kind with that
    kind's config keys (int: act_width, weight_width, acc_width, overflow; fp: act_format,
    weight_format, accumulate) and, for every kind, the port widths of one element: act_bits,
    weight_bits, result_bits.
    `pe` (blocks that contain a MAC unit) is the MAC unit's arithmetic: kind, formats or widths,
    accumulation mode, accumulator bits, and its own latency `mac_latency`.
    `semantics` states the exact arithmetic and interface rules (gen.semantics), from which the
    datasheet is written.
    """
    mac = find_mac(component, block)
    parameters = {
        "rows": config.rows, "cols": config.cols, "n": config.n, "m": config.m,
        "nm": config.nm, "dense": config.dense, "dataflow": config.dataflow,
        "tile_rows": config.rows if config.dataflow == "output_stationary" else 1,
        "beat_groups": 1 if config.dataflow == "output_stationary" else config.rows,
        "encoding": config.encoding, "runtime": config.runtime,
        "pe_kind": config.pe_kind, **config.pe_params,
        "act_bits": config.act_bits, "weight_bits": config.weight_bits,
        "result_bits": (Shape.cast(mac.signature.members["result"].shape).width
                        if mac is not None else None),
        "pe_summary": config.pe_summary, "multipliers": config.multipliers,
        "dense_macs_per_cycle": config.dense_macs_per_cycle,
    }
    if config.runtime:
        parameters.update(runtime_parameters(config))
    info = {
        "generator": {"name": "nmforge", "version": __version__},
        "module": module,
        "block": block,
        "config": config.to_dict(),
        "config_hash": config.config_hash(),
        "parameters": parameters,
    }
    if mac is not None:
        info["pe"] = mac_parameters(config, mac)
    if block == "accelerator":
        info["accelerator"] = accelerator_section(component)
    if block == "array":
        info["result_depth"] = component.result_depth  # tiles the output queue holds
    return info | {
        "latency_cycles": getattr(component, "latency", 0),
        "clock": {"port": "clk", "reset": "rst (synchronous, active high)",
                  "reset_cycles_min": RESET_CYCLES_MIN},
        "semantics": semantics(config, info.get("pe")),
        "stream_protocol": STREAM_PROTOCOL,
        "interfaces": describe_interfaces(component),
        "ports": verilog_ports(verilog_text, module),
        "verilog_sha256": hashlib.sha256(verilog_text.encode()).hexdigest(),
    }
