"""nmforge.compiler: PyTorch model -> pruned, quantized IR -> accelerator program.

Passes: capture (torch.export + core ATen decompositions) -> import (a handler per ATen op,
`importer.HANDLERS`) -> legalize (ReLU fusion, K padding) -> sparsify (N:M magnitude pruning,
golden.nm) -> quantize (INT8, HAWQ-V3 dyadic requantization). `reference` executes the result
bit-exactly in numpy.
"""
from .capture import ModelFile, capture, load_model_file
from .errors import CompileError
from .pipeline import CompiledModel, compile_model

__all__ = ["CompileError", "CompiledModel", "ModelFile", "capture", "compile_model",
           "load_model_file"]
