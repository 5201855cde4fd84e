"""Run a program (compiler.emit) on the golden executor: the host runs its steps (input
quantization, host ops) and feeds device steps to `golden.accel.Executor`, whose buffers persist
from the preamble on (weights loaded once).

`load_program(dir)` reads and checks a program directory; `run_program(program, x)` returns
the output integers of every input row and the executor's status; `record_device_run` also
returns the whole command list and data-in stream the accelerator saw (compiler.sim replays it
on the Verilator-simulated RTL).
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from ..golden.accel import Executor, act_image, stream_words, unpack_store
from ..golden.cycle_model import predict
from ..rtl.isa import AcceleratorShape, Buffer, Opcode
from . import hostops
from .emit import FORMAT, commands_of
from .errors import CompileError
from .ir import Node
from .quantize import fp_codes, fp_output, quantize_values
from .reference import host_op, pad_columns


@dataclasses.dataclass
class Program:
    """A loaded program: its JSON, its images and the accelerator shape it was compiled for."""
    path: pathlib.Path
    spec: dict
    images: dict

    @property
    def shape(self) -> AcceleratorShape:
        return AcceleratorShape(**self.spec["shape"])

    @property
    def batch(self) -> int:
        return self.spec["batch"]

    def preamble_data(self):
        return np.concatenate([self.images[name] for name in self.spec["preamble"]["images"]])


def load_program(directory) -> Program:
    """Read DIR/program.json and DIR/images.npz; CompileError (one line) if they are missing or
    not a program of this format."""
    directory = pathlib.Path(directory)
    try:
        spec = json.loads((directory / "program.json").read_text())
        with np.load(directory / "images.npz") as npz:
            images = {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as error:
        raise CompileError(f"{directory}: not a program directory (program.json + images.npz "
                           f"from nmforge compile): {type(error).__name__}") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise CompileError(f"{directory}/program.json: format {spec.get('format') if isinstance(spec, dict) else None!r}; "
                           f"allowed: {FORMAT!r}")
    return Program(directory, spec, images)


def _nodes(spec):
    return [Node(n["name"], n["op"], tuple(n["inputs"]), tuple(n["shape"]), n["attrs"])
            for n in spec["graph"]]


def _host_step(node, values, act_width):
    if node.op == "add":
        a = node.attrs
        return hostops.residual_add_int(values[node.inputs[0]], values[node.inputs[1]],
                                        a["mult"][0], a["mult"][1], a["shift"], act_width)
    return host_op(node, [values[i] for i in node.inputs], integer=True)


def _quantize_input(spec_input, x):
    """The model input as the first layer reads it: integers, or format codes (kind "fp")."""
    if spec_input.get("format"):
        return fp_codes(x, spec_input["scale"], spec_input["format"])
    return quantize_values(x, spec_input["scale"], spec_input["act_width"])


def device_data(step, values, shape):
    """The data-in stream words of a device step's LOADs, from the host tensors."""
    data = []
    for load in step["loads"]:
        a = pad_columns(values[load["node"]], load["k"])
        words = act_image(a, shape)
        data += stream_words(words, shape.word_bits(Buffer.ACT), shape.stream_width)
    return data


def take_stores(step, packets, values, shape, layers, act_format=None):
    """Put a device step's STORE packets into the host tensors (kind "fp": FP32 result bits
    through the layer's host output stage, quantize.fp_output)."""
    for store, packet in zip(step["stores"], packets):
        bits = shape.store_element_bits(store["wide"])
        flat = unpack_store(packet, store["m"] * store["n"], bits, shape.stream_width,
                            signed=shape.kind == "int")
        out = flat.reshape(store["m"], store["n"])
        if shape.kind == "fp":
            fp = layers[store["node"]]["fp"]
            out = fp_output(out, fp["acc_scale"], fp["bias"], layers[store["node"]]["relu"],
                            fp["output_scale"], act_format)
        values[store["node"]] = out


def run_program(program: Program, x, progress=None, device=None):
    """Run `x` (a float batch, any number of rows: split into batches of program.batch, the last
    one padded with zero rows) through the program. `device(step, commands, data)` runs a device
    step and returns its STORE packets (default: the golden executor). `progress(done, total,
    step)` is called after every step of every batch: inputs done (a batch's rows count once
    its last step ran), input rows, and the step that ran (its GEMM layers or host op). Returns (outputs (rows, ...) int64, per-layer beats dict)."""
    spec, shape = program.spec, program.shape
    nodes = _nodes(spec)
    layers = {layer["name"]: layer for layer in spec["layers"]}
    act_width = spec["input"]["act_width"]
    executor = Executor(shape)
    if device is None:
        executor.run(commands_of(spec["preamble"]["commands"]), program.preamble_data())

        def device(step, commands, data):
            return executor.run(commands, data)
    x = np.asarray(x, dtype=np.float64)
    rows, batch = x.shape[0], program.batch
    batches = -(-rows // batch)
    outputs = []
    for b in range(batches):
        chunk = np.zeros((batch,) + x.shape[1:])
        part = x[b * batch:(b + 1) * batch]
        chunk[:len(part)] = part
        values = {spec["input"]["node"]: _quantize_input(spec["input"], chunk)}
        by_name = {n.name: n for n in nodes}
        for number, step in enumerate(spec["steps"]):
            if "host" in step:
                node = by_name[step["host"]]
                if node.op != "input":
                    values[node.name] = _host_step(node, values, act_width)
            else:
                packets = device(step, commands_of(step["device"]), device_data(step, values, shape))
                take_stores(step, packets, values, shape, layers, spec["input"].get("format"))
            if progress:
                last = number == len(spec["steps"]) - 1
                progress(b * batch + (len(part) if last else 0), rows,
                         step.get("host") or "+".join(step["gemms"]))
        outputs.append(values[spec["output"]["node"]][:len(part)])
    return np.concatenate(outputs), executor.status


def record_device_run(program: Program, x, progress=None):
    """Run on the golden executor and record everything the accelerator saw: the whole command
    list (preamble, then every device step of every batch) and its data-in stream words.
    Returns (outputs, commands, data_in, labels): labels name each command's part of the work
    ("weights" for the preamble, "load", a layer name for a GEMM, "store")."""
    commands = commands_of(program.spec["preamble"]["commands"])
    labels = ["weights"] * len(commands)
    data_in = [int(w) for w in program.preamble_data()]
    executor = Executor(program.shape)
    executor.run(commands, data_in)

    def device(step, step_commands, data):
        gemms = iter(step["gemms"])
        for word in step_commands:
            opcode = word & 0xF
            labels.append(next(gemms) if opcode == Opcode.GEMM.value
                          else "load" if opcode == Opcode.LOAD.value else "store")
        commands.extend(step_commands)
        data_in.extend(int(w) for w in data)
        return executor.run(step_commands, data)
    outputs, _ = run_program(program, x, progress, device)
    return outputs, commands, data_in, labels


def predict_cycles(program: Program, commands, labels):
    """golden.cycle_model's prediction for a recorded run: {"cycles": total, "busy": {label:
    cycles its commands kept their unit busy}} (units overlap, so busy times may add up to more
    than the total)."""
    timing = program.spec["timing"]
    model = predict(program.shape, commands, timing["array_latency"], timing["result_depth"])
    busy = {}
    for label, t in zip(labels, model["commands"]):
        if t.start is not None:
            busy[label] = busy.get(label, 0) + t.end - t.start
    return {"cycles": model["cycles"], "busy": busy}


def dequantize(program: Program, y):
    scale = np.asarray(program.spec["output"]["scale"])
    return np.asarray(y, dtype=np.float64) * (scale if scale.size > 1 else scale[0])
