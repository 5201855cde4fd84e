"""`generate`: write a block's Verilog and manifest for a config, atomically."""
import json
import os
import pathlib
import tempfile
from dataclasses import dataclass

from .datasheet import write_datasheet
from .elaborate import build, module_name, to_verilog
from .manifest import build_manifest


@dataclass
class Generated:
    verilog: pathlib.Path
    manifest: pathlib.Path
    info: dict


def generate(config, out_dir, block=None) -> Generated:
    """Write `<module>.v` and `manifest.json` (or `<module>.manifest.json` for sub-blocks) into
    `out_dir`, and for the array its datasheet (datasheet.md, datasheet.html and the timing
    diagrams' SVGs, gen.datasheet). The Verilog and manifest appear complete or not at all.
    `block` None: the design's top level (the accelerator when the config has an
    [accelerator] table, else the array)."""
    out_dir = pathlib.Path(out_dir)
    if block is None:
        block = "accelerator" if config.accelerator else "array"
    component = build(config, block)
    module = module_name(config, block)
    verilog_text = to_verilog(component, module)
    info = build_manifest(config, block, component, module, verilog_text)
    out_dir.mkdir(parents=True, exist_ok=True)
    verilog_path = out_dir / f"{module}.v"
    top = block in ("array", "accelerator")
    manifest_path = out_dir / ("manifest.json" if top else f"{module}.manifest.json")
    _write_atomically(verilog_path, verilog_text)
    _write_atomically(manifest_path, json.dumps(info, indent=2, sort_keys=True) + "\n")
    if block == "array":
        write_datasheet(json.loads(manifest_path.read_text()), out_dir)
    return Generated(verilog_path, manifest_path, info)


def _write_atomically(path: pathlib.Path, text: str):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp creates owner-only files; outputs are ordinary files
    os.replace(tmp, path)
