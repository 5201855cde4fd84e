"""Emit: a compiled model -> an accelerator program (rtl.isa commands + memory images + JSON).

Schedule (one batch of `batch` inputs per pass):
- preamble, once: LOAD every GEMM's weight image (golden.accel.weight_image of its compressed
  N:M weight) and PARAM words (bias, mult, shift per output column) into their own regions.
- steps, per batch, in graph order: a *device* step is a run of GEMMs between host ops. Its
  input tensors are LOADed into ACT from the host; a GEMM whose only reader is the next GEMM
  writes its requantized output straight into ACT (`to_act`, chaining without the host);
  every other GEMM writes OUT and is STOREd (its tensor returns to the host). A *host* step runs
  one host op (rtl has no unit for it: im2col, fold, pooling, residual add, reshape, ReLU).
- `wait` on each step's first LOAD (the previous step's GEMMs may still read ACT), on each GEMM
  that reads a LOAD of its step, and on every STORE: `golden.accel.hazards` finds none.

Files in the program directory: program.json (design, layers, steps with command words in hex),
images.npz (per layer: `<name>.weight` and `<name>.param` data-in stream words, uint64).
"""
from __future__ import annotations

import json
import math
import pathlib

import numpy as np

from ..golden.accel import hazards, param_image, stream_words, weight_image
from ..rtl import isa
from ..rtl.isa import AcceleratorShape, Buffer
from .errors import CompileError
from ..golden.nm import compress_runtime
from .reference import compressed_weights

FORMAT = "nmforge-program/1"


def _ceil(a, b):
    return -(-a // b)


def _fits(buffer, end, shape, what):
    if end > shape.depth(buffer):
        hint = "; or compile with a smaller --batch" if buffer in (Buffer.ACT, Buffer.OUT) else ""
        raise CompileError(f"{what}: needs {end} {buffer.name} words, the design has "
                           f"{shape.depth(buffer)} (accelerator.{buffer.name.lower()}_depth{hint})")


def _chained(graph, gemm, layers, shape):
    """True when the GEMM's output feeds exactly one GEMM and nothing else (kept in ACT), which
    reads it as it lies there: K = the output's columns padded to the array's C, a multiple of
    the ACT word's K-group."""
    users = graph.users(gemm.name)
    if not (gemm.attrs["q"]["requant"] and gemm.name != graph.output and len(users) == 1
            and users[0].op == "gemm"):
        return False
    width = _ceil(gemm.shape[1], shape.cols) * shape.cols
    return layers[users[0].name]["k_pad"] == width and width % shape.k_group == 0


def _weight_stream(node, shape, pattern_id):
    """WEIGHT words of a GEMM and their data-in stream words: compressed in the layer's pattern
    (a run-time design: golden.nm.compress_runtime form of pattern `pattern_id`)."""
    if shape.runtime:
        values, indices = compress_runtime(node.attrs["q"]["weight"], node.attrs["pattern"])
    elif shape.dense:
        values, indices = node.attrs["q"]["weight"], None
    else:
        values, indices = compressed_weights(node)
    words = weight_image(values, indices, shape, pattern_id)
    return words, stream_words(words, shape.weight_word_bits, shape.stream_width)


MAX_BATCH = 16   # inputs per pass: fixed per-command latencies spread over more of them


def emit_program(compiled, batch=None) -> dict:
    """The program (a JSON-able dict) and its images ({name: uint64 stream words}) for batches
    of `batch` inputs (default: the largest up to MAX_BATCH whose tensors fit the buffers)."""
    if batch is None:
        for candidate in range(MAX_BATCH, 1, -1):
            try:
                return emit_program(compiled, candidate)
            except CompileError:
                continue
        batch = 1
    if batch < 1:
        raise CompileError(f"--batch {batch}: allowed: an integer >= 1")
    config = compiled.target.config
    if not getattr(config, "accelerator", False):
        raise CompileError(f"design {config.name}: no [accelerator] table; a program needs an "
                           f"accelerator design (see examples/models/*.toml)")
    shape = AcceleratorShape.from_config(config)
    graph = compiled.graph
    example_rows = graph.input.shape[0]
    images, preamble, layers = {}, [], []
    weight_addr = param_addr = 0
    for node in graph.gemms():
        if tuple(node.attrs["pattern"]) not in shape.patterns:
            raise CompileError(f"layer {node.name}: pattern {node.attrs['pattern']} does not run "
                               f"on {config.name} ({config.nm})")
        pattern_id = shape.patterns.index(tuple(node.attrs["pattern"]))
        q = node.attrs["q"]
        words, stream = _weight_stream(node, shape, pattern_id)
        fp = compiled.target.kind == "fp"      # the output stage passes FP32 results through
        bias = np.zeros(len(q["bias"]), dtype=np.int64) if fp else q["bias"]
        params = param_image(bias, q.get("mult", np.ones_like(bias)),
                             q.get("shift", np.zeros_like(bias)))
        n = node.shape[1]
        _fits(Buffer.WEIGHT, weight_addr + len(words), shape, f"layer {node.name} weights")
        _fits(Buffer.PARAM, param_addr + n, shape, f"layer {node.name} parameters")
        images[f"{node.name}.weight"] = np.array(stream, dtype=np.uint64)
        images[f"{node.name}.param"] = np.array(
            stream_words(params, shape.word_bits(Buffer.PARAM), shape.stream_width), dtype=np.uint64)
        preamble += [isa.load(Buffer.WEIGHT, weight_addr, len(words)),
                     isa.load(Buffer.PARAM, param_addr, n)]
        k, k_pad = node.attrs["weight"].shape[0], node.attrs["k_pad"]
        w = q["weight"]
        layers.append({
            "name": node.name, "where": "array", "m": node.shape[0] * batch // example_rows,
            "k": int(compiled.float_graph.node(node.name).attrs["weight"].shape[0]),
            "k_pad": int(k_pad), "n": int(n), "pattern": f"{node.attrs['pattern'][0]}:{node.attrs['pattern'][1]}",
            "already_nm": bool(node.attrs["already_nm"]),
            "format": compiled.target.weight_format or f"int{compiled.target.weight_width}",
            "density": float((w != 0).mean()), "relu": bool(node.attrs["relu"]),
            "raw": not q["requant"], "input_scale": graph.node(node.inputs[0]).attrs["scale"],
            "weight_scales": [float(s) for s in q["weight_scale"]],
            "output_scale": (float(node.attrs["scale"]) if q["requant"] else None),
            "mult": [int(x) for x in q.get("mult", [])], "shift": [int(x) for x in q.get("shift", [])],
            "pattern_id": pattern_id, "weight_addr": weight_addr, "weight_words": len(words),
            "param_addr": param_addr})
        if fp:   # the host's output stage (quantize.fp_output)
            layers[-1]["fp"] = {"acc_scale": [float(x) for x in q["acc_scale"]],
                                "bias": [float(x) for x in q["bias"]],
                                "output_scale": (None if node.name == graph.output
                                                 else float(node.attrs["scale"]))}
        weight_addr += len(words)
        param_addr += _ceil(n, shape.param_align) * shape.param_align  # the next GEMM's aligned
    by_name = {layer["name"]: layer for layer in layers}
    steps = _schedule(graph, shape, by_name, batch, example_rows)
    from ..gen.elaborate import build               # the array's timing, for the cycle model
    array = build(config, "accelerator").array
    program = {"format": FORMAT, "design": config.to_dict(), "shape": shape.to_dict(),
               "batch": batch, "input": {"node": graph.input.name, "scale": compiled.input_scale,
                                         "sample_shape": list(graph.input.shape[1:]),
                                         "act_width": compiled.target.act_width,
                                         "format": compiled.target.act_format},
               "output": {"node": graph.output, "scale": np.ravel(compiled.output_scale).tolist()},
               "host_ops": [{"name": n.name, "op": n.op} for n in graph.nodes if n.where == "host"],
               "graph": _graph_json(graph), "layers": layers,
               "preamble": {"commands": [_hex(c) for c in preamble],
                            "images": [f"{layer['name']}.{part}" for layer in layers
                                       for part in ("weight", "param")]},
               "steps": steps,
               "timing": {"array_latency": array.latency, "result_depth": array.result_depth}}
    _check_hazards(program)
    return program, images


def _schedule(graph, shape, layers, batch, example_rows):
    steps, device = [], None
    for node in graph.nodes:
        if node.op != "gemm":
            device = None
            steps.append({"host": node.name})
            continue
        if device is not None and node.inputs[0] in device["gemms"] \
                and node.inputs[0] not in device["_in_act"]:
            device = None                       # its input must reach the host first
        if device is None:
            device = {"device": [], "loads": [], "stores": [], "gemms": [],
                      "_act": 0, "_out": 0, "_in_act": {}}
            steps.append(device)
        layer = layers[node.name]
        m, k, n = layer["m"], layer["k_pad"], layer["n"]
        row_panels = _ceil(m, shape.rows)
        source = node.inputs[0]
        wait = False
        if source in device["_in_act"]:
            act_addr = device["_in_act"][source]
        else:                                   # a host tensor: LOAD it
            act_addr = device["_act"]
            count = row_panels * k // shape.k_group
            device["_act"] += count
            _fits(Buffer.ACT, device["_act"], shape, f"layer {node.name} input (batch {batch})")
            device["device"].append(isa.load(Buffer.ACT, act_addr, count, wait=not device["loads"]))
            device["loads"].append({"node": source, "addr": act_addr, "count": count, "k": k,
                                    "m": m})
            wait = True
        if _chained(graph, node, layers, shape):
            dst = device["_act"]
            device["_act"] += row_panels * _ceil(n, shape.cols) * shape.cols // shape.k_group
            _fits(Buffer.ACT, device["_act"], shape, f"layer {node.name} output (batch {batch})")
            device["_in_act"][node.name] = dst
            cmd = isa.gemm(act_addr, layer["weight_addr"], layer["param_addr"], dst, m, k, n,
                           relu=layer["relu"], to_act=True, wait=wait, pattern=layer["pattern_id"])
        else:
            dst = device["_out"]
            device["_out"] += m * n
            _fits(Buffer.OUT, device["_out"], shape, f"layer {node.name} output (batch {batch})")
            cmd = isa.gemm(act_addr, layer["weight_addr"], layer["param_addr"], dst, m, k, n,
                           relu=layer["relu"], raw=layer["raw"], wait=wait,
                           pattern=layer["pattern_id"])
            device["stores"].append({"node": node.name, "addr": dst, "m": m, "n": n,
                                     "wide": layer["raw"]})
        device["device"].append(cmd)
        device["gemms"].append(node.name)
    for step in steps:
        if "device" in step:
            stores = step.pop("stores")
            for store in stores:
                store["command"] = len(step["device"])
                step["device"].append(isa.store(store["addr"], store["m"] * store["n"],
                                                wide=store["wide"], wait=True))
            step["stores"] = stores
            step["device"] = [_hex(c) for c in step["device"]]
            for key in ("_act", "_out", "_in_act"):
                del step[key]
    return steps


def _graph_json(graph):
    """The host's view of the graph: every node with its op, inputs and host-op attributes."""
    out = []
    for node in graph.nodes:
        attrs = {k: v for k, v in node.attrs.items()
                 if k in ("kernel", "stride", "padding", "spatial", "target_shape")}
        if node.op == "add":
            attrs["mult"] = [int(x) for x in node.attrs["q"]["mult"]]
            attrs["shift"] = int(node.attrs["q"]["shift"])
        out.append({"name": node.name, "op": node.op, "inputs": list(node.inputs),
                    "shape": list(node.shape), "attrs": attrs})
    return out


def _hex(command) -> str:
    return f"{isa.encode(command):032x}"


def commands_of(hex_words):
    return [int(h, 16) for h in hex_words]


def _check_hazards(program):
    shape = AcceleratorShape(**program["shape"])
    words = commands_of(program["preamble"]["commands"])
    for step in program["steps"]:
        if "device" in step:
            words += commands_of(step["device"])
    words += words[len(program["preamble"]["commands"]):]     # a second batch after the first
    found = hazards(words, shape)
    if found:
        raise AssertionError(f"emitted program has hazards: {found[:3]}")


def write_program(directory, program, images):
    """Write program.json and images.npz into `directory` (created; files replaced)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "images.npz", **images)
    (directory / "program.json").write_text(json.dumps(program, indent=1) + "\n")
