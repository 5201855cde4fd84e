"""Capture: load a model file and export its module to core ATen with torch.export.

A model file is a Python file defining `model()` -> torch.nn.Module and `example_input()` ->
a tensor, optionally `calibration_data()` -> a tensor batch (default: the example input) and
`test_data()` -> (inputs, labels).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import sys
from typing import Any, Callable

from .errors import CompileError

REQUIRED = ("model", "example_input")
OPTIONAL = ("calibration_data", "test_data")


@dataclasses.dataclass
class ModelFile:
    """The functions of a loaded model file (missing optional ones are None)."""
    path: pathlib.Path
    model: Callable[[], Any]
    example_input: Callable[[], Any]
    calibration_data: Callable[[], Any] | None
    test_data: Callable[[], Any] | None


def load_model_file(path) -> ModelFile:
    """Import `path` as a module and pick its model functions; CompileError if it is not a
    readable Python file or lacks `model()` / `example_input()`."""
    path = pathlib.Path(path)
    if path.suffix != ".py" or not path.is_file():
        raise CompileError(f"{path}: not a Python model file (a .py file defining "
                           f"{', '.join(f + '()' for f in REQUIRED)})")
    name = f"nmforge_model_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the user's file: any exception is bad input
        del sys.modules[name]
        raise CompileError(f"{path}: importing the model file failed: "
                           f"{type(error).__name__}: {error}".replace("\n", " ")) from error
    missing = [f for f in REQUIRED if not callable(getattr(module, f, None))]
    if missing:
        raise CompileError(f"{path}: missing {', '.join(f + '()' for f in missing)}; a model file "
                           f"defines {', '.join(f + '()' for f in REQUIRED)} and optionally "
                           f"{', '.join(f + '()' for f in OPTIONAL)}")
    return ModelFile(path, module.model, module.example_input,
                     *(getattr(module, f, None) for f in OPTIONAL))


def capture(module, example_input):
    """torch.export the module in eval mode on `example_input`, decomposed to core ATen
    (`run_decompositions()`); returns the ExportedProgram. CompileError when export fails.
    torch's own warnings while exporting (deprecations inside torch, attributes assigned during
    tracing) are silenced: the compile's output is its log, or one error line."""
    import warnings
    import torch
    module = module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(module, (example_input,))
            return program.run_decompositions()
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CompileError(f"torch.export could not capture {type(module).__name__}: "
                           f"{type(error).__name__}: {first}") from error
