"""The compile flow: capture -> import -> legalize -> sparsify -> quantize, as named passes.

`compile_model(model, example_input, config, ...)` returns a `CompiledModel`: the quantized IR
plus what the host needs to run it (input quantization, output dequantization) and a log of the
passes that ran.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import passes
from .capture import capture
from .errors import CompileError
from .importer import import_program
from .ir import Graph
from .quantize import fp_codes, quantize_fp, quantize_int, quantize_values
from .reference import run_float, run_fp, run_int
from .target import Target


FP_HOST_OPS = ("input", "reshape", "im2col", "to_nchw")   # fp designs: ops that only move codes


@dataclasses.dataclass
class CompiledModel:
    """A quantized IR graph for a target, with the host's input and output conversions."""
    graph: Graph
    target: Target
    float_graph: Graph          # the imported graph before sparsify/quantize (float reference)
    log: list[str]

    @property
    def input_scale(self) -> float:
        return self.graph.input.attrs["scale"]

    @property
    def output_scale(self):
        """Per-tensor scale (float) or per-channel scales (ndarray) of the output integers (fp:
        1.0, the outputs are float)."""
        if self.target.kind == "fp":
            return 1.0
        return self.graph.node(self.graph.output).attrs["scale"]

    def quantize_input(self, x):
        """The model input as the integers (fp: format codes) the first layer reads."""
        if self.target.kind == "fp":
            return fp_codes(_numpy(x), self.input_scale, self.target.act_format)
        return quantize_values(_numpy(x), self.input_scale, self.target.act_width)

    def run_reference(self, x, record=None):
        """Integer (fp: FP8) reference execution (numpy, golden GEMMs) on a float input batch."""
        if self.target.kind == "fp":
            return run_fp(self.graph, self.quantize_input(x), self.target, record)
        return run_int(self.graph, self.quantize_input(x), self.target.act_width, record)

    def dequantize(self, y):
        return np.asarray(y, dtype=np.float64) * self.output_scale

    def run_float(self, x, pruned=True):
        """Float execution: of the pruned graph (before quantization) or of the imported one."""
        return run_float(self.graph if pruned else self.float_graph, _numpy(x))


def _numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _copy_graph(graph: Graph) -> Graph:
    return Graph([dataclasses.replace(n, attrs=dict(n.attrs)) for n in graph.nodes], graph.output)


def compile_model(module, example_input, config, calibration=None, patterns=None) -> CompiledModel:
    """Compile a torch module for the design `config` (gen.config.Config).

    `calibration`: a float input batch for the activation scales (default: `example_input`);
    `patterns`: {layer name: "N:M" | "dense"} per-layer patterns (run-time designs), other
    layers get the design's pattern. Layer names are the IR GEMM names (`Graph.gemms()`).
    """
    target = Target(config)
    log = []
    program = capture(module, example_input)
    graph = import_program(program)
    log.append(f"capture+import: {len(graph.nodes)} nodes, {len(graph.gemms())} GEMMs")
    float_graph = _copy_graph(graph)
    if passes.fuse_relu(graph):
        log.append("legalize: ReLU fused into GEMM output stages")
    names = [g.name for g in graph.gemms()]
    unknown = sorted(set(patterns or {}) - set(names))
    if unknown:
        raise CompileError(f"per-layer pattern for unknown layer {unknown[0]!r}; layers: "
                           f"{', '.join(names)}")
    chosen = {name: target.pattern((patterns or {})[name]) if name in (patterns or {})
              else target.default_pattern for name in names}
    passes.pad_k(graph, {name: target.k_multiple(p) for name, p in chosen.items()})
    passes.sparsify(graph, chosen)
    log.append("sparsify: " + ", ".join(f"{g.name} {g.attrs['pattern'][0]}:{g.attrs['pattern'][1]}"
                                        + (" (kept)" if g.attrs["already_nm"] else " (pruned)")
                                        for g in graph.gemms()))
    calibration = example_input if calibration is None else calibration
    if target.kind == "fp":
        moving = [n for n in graph.nodes if n.where == "host" and n.op not in FP_HOST_OPS]
        if moving:
            raise CompileError(f"host op {moving[0].op} ({moving[0].name}) on the fp design "
                               f"{target.config.name}: not implemented for FP8 codes; allowed "
                               f"host ops: {', '.join(FP_HOST_OPS)}")
        quantize_fp(graph, _numpy(calibration), target.act_format, target.weight_format)
        log.append(f"quantize: {target.act_format} activations (per tensor scale), "
                   f"{target.weight_format} weights (per channel scale), FP32 results scaled "
                   f"on the host")
        return CompiledModel(graph, target, float_graph, log)
    quantize_int(graph, _numpy(calibration), target.act_width, target.weight_width)
    log.append(f"quantize: INT{target.act_width} activations (per tensor), "
               f"INT{target.weight_width} weights (per channel), dyadic requantization")
    return CompiledModel(graph, target, float_graph, log)
