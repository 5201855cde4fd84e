"""`package`: a generated array as a FuseSoC core, for open flows (FuseSoC CAPI2 + Edalize).

`package(config, out_dir)` writes into `out_dir`:

- `<name>.v` and `manifest.json`, exactly as `nmforge generate` writes them;
- `<name>.vlt`, a Verilator configuration file that waives, for `<name>.v` only, the lint
  warnings Amaranth's Verilog trips (the rules of `sim.runner.VERILATOR_LINT_WAIVERS`), so a
  design that instantiates the array can lint and build with Verilator without waiving them for
  its own code;
- `<name>.core`, a FuseSoC CAPI2 core named `nmforge:arrays:<name>:<generator version>` with the
  filesets `rtl` (the Verilog), `verilator_waivers` (the .vlt) and `manifest` (manifest.json, type
  `user`), and the targets

  | target | Edalize flow API | what `fusesoc run --target T VLNV` does |
  |---|---|---|
  | `default` | - | what a core that depends on this one gets: all three filesets (Edalize flow-API tools other than Verilator pass over the .vlt) |
  | `lint` | `flow: lint`, tool verilator | `verilator --lint-only` with the project's waivers |
  | `sim` | `flow: sim`, tool verilator, `mode: cc`, `exe: false` | with `--build`: the Verilated C++ model (`libV<name>.a`) for a C++ testbench to link; nothing to run |
  | `synth` | `flow: generic`, tool yosys, `arch: ecp5`, JSON netlist | `synth_ecp5 -top <name>`; Edalize drives Yosys through a Tcl script, so this needs a native `yosys` with Tcl (YoWASP's has none) |

The targets use the Edalize *flow API* (`flow` + `flow_options`), which FuseSoC 2.x documents as
the API meant to become the default: with the older tool API (`default_tool` + `tools`)
Edalize 0.6 prints "This backend is deprecated ... Please migrate to the flow API". The `lint`
flow itself sets Verilator's `mode: lint-only`.

The generated module has no Verilog parameters, so the core declares none: every design
parameter is baked into the Verilog, listed in the core's description and in a comment block at
the top of the core file, and recorded in manifest.json.

Every file appears complete or not at all: all four are written into a temporary directory inside
`out_dir` and then moved into place, the core file last. Neither FuseSoC nor PyYAML is needed at
run time: the core is emitted by a small YAML writer (a string is plain when it cannot be read as
anything else, otherwise JSON-quoted, which is valid YAML).
"""
import json
import os
import pathlib
import re
import shutil
import tempfile

from .. import __version__
from ..sim.runner import VERILATOR_LINT_WAIVERS
from .generate import generate

VENDOR = "nmforge"
LIBRARY = "arrays"
SYNTH_ARCH = "ecp5"


def vlnv(config) -> str:
    """The core's VLNV name: `nmforge:arrays:<name>:<generator version>`."""
    return f"{VENDOR}:{LIBRARY}:{config.name}:{__version__}"


def package(config, out_dir) -> dict:
    """Write `<name>.v`, `manifest.json`, `<name>.vlt` and `<name>.core` into `out_dir`.

    Returns {"vlnv", "core", "verilog", "manifest", "waivers" (paths), "files" (all four, in
    the order they were moved into place), "targets" (names), "core_data" (the core as a dict,
    what a YAML parser reads from the core file)}."""
    out_dir = pathlib.Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(dir=out_dir, prefix=".package-"))
    try:
        generated = generate(config, staging)
        info = generated.info
        module = info["module"]
        waivers = staging / f"{module}.vlt"
        waivers.write_text(verilator_config(module))
        data = core_data(config, info, generated.verilog.name, generated.manifest.name, waivers.name)
        core = staging / f"{module}.core"
        core.write_text(core_text(data, info))
        files = []
        mode = 0o666 & ~_umask()  # mkstemp (used by `generate`) makes 0600 files; a package is shared
        for staged in (generated.verilog, generated.manifest, waivers, core):
            staged.chmod(mode)
            os.replace(staged, out_dir / staged.name)
            files.append(out_dir / staged.name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    verilog, manifest, waivers, core = files
    return {"vlnv": data["name"], "core": core, "verilog": verilog, "manifest": manifest,
            "waivers": waivers, "files": files, "targets": list(data["targets"]), "core_data": data}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def verilator_options() -> list:
    """Verilator options of the `lint` and `sim` targets: the project's lint waivers."""
    return list(VERILATOR_LINT_WAIVERS)


def verilator_config(module) -> str:
    """A Verilator configuration file (.vlt) waiving the project's lint rules in `<module>.v`."""
    rules = [flag.removeprefix("-Wno-") for flag in VERILATOR_LINT_WAIVERS
             if flag.startswith("-Wno-") and flag != "-Wno-fatal"]
    lines = ["`verilator_config",
             f"// Generated by nmforge {__version__}: Amaranth's Verilog trips these style warnings;",
             f"// they are waived for {module}.v only."]
    # A pattern is matched against the file name as the tool was given it: bare or with a path.
    lines += [f'lint_off -rule {rule} -file "{pattern}"'
              for rule in rules for pattern in (f"{module}.v", f"*/{module}.v")]
    return "\n".join(lines) + "\n"


def core_data(config, info, verilog_name, manifest_name, waivers_name) -> dict:
    """The CAPI2 core as a dict (everything but the `CAPI=2:` line and the comments)."""
    module = info["module"]
    options = verilator_options()
    return {
        "name": vlnv(config),
        "description": _description(info),
        "filesets": {
            "rtl": {"files": [verilog_name], "file_type": "verilogSource"},
            "verilator_waivers": {"files": [waivers_name], "file_type": "vlt"},
            "manifest": {"files": [manifest_name], "file_type": "user"},
        },
        "targets": {
            "default": {
                "filesets": ["rtl", "verilator_waivers", "manifest"],
                "toplevel": module,
            },
            "lint": {
                "description": "Verilator --lint-only with the nmforge lint waivers",
                "filesets": ["rtl", "verilator_waivers"],
                "flow": "lint",
                "flow_options": {"tool": "verilator", "verilator_options": options},
                "toplevel": module,
            },
            "sim": {
                "description": f"Verilated C++ model of {module} (Verilator --cc, no main) for "
                               "a C++ testbench to link: fusesoc run --build --target sim",
                "filesets": ["rtl", "verilator_waivers"],
                "flow": "sim",
                "flow_options": {"tool": "verilator", "mode": "cc", "exe": "false",
                                 "verilator_options": options},
                "toplevel": module,
            },
            "synth": {
                "description": f"Yosys synth_{SYNTH_ARCH} to a JSON netlist",
                "filesets": ["rtl"],
                "flow": "generic",
                "flow_options": {"tool": "yosys", "arch": SYNTH_ARCH, "output_format": "json"},
                "toplevel": module,
            },
        },
    }


def core_text(data, info) -> str:
    """The core file: `CAPI=2:`, a comment block with the baked-in parameters, then the YAML."""
    params = info["parameters"]
    width = max(len(key) for key in params)
    header = ["CAPI=2:",
              f"# Generated by nmforge {__version__} (config hash {info['config_hash']}); "
              "regenerate rather than edit.",
              f"# The module {info['module']} has no Verilog parameters: the design parameters are "
              "baked into the",
              "# generated Verilog. They are (manifest.json also lists ports, payload layouts and "
              "latency):"]
    header += [f"#   {key:<{width}} = {json.dumps(value)}" for key, value in params.items()]
    header.append(f"#   {'latency_cycles':<{width}} = {info['latency_cycles']}")
    return "\n".join(header) + "\n" + _yaml(data) + "\n"


def _description(info) -> str:
    p = info["parameters"]
    return (f"nmforge {p['rows']}x{p['cols']} {p['dataflow']} {p['nm']} "
            f"{'dense' if p['dense'] else 'N:M sparse'} MAC array, {p['pe_kind']} PE "
            f"({p['pe_summary']}), latency {info['latency_cycles']} cycles. No Verilog parameters: the design "
            f"parameters are baked in and listed in manifest.json.")


def _yaml(value, indent=0) -> str:
    """Block-style YAML for dicts of dicts, lists of scalars and scalars."""
    pad = "  " * indent
    lines = []
    for key, item in value.items():
        if isinstance(item, dict):
            lines.append(f"{pad}{key}:")
            lines.append(_yaml(item, indent + 1))
        elif isinstance(item, list):
            lines.append(f"{pad}{key}:")
            lines += [f"{pad}  - {_scalar(element)}" for element in item]
        else:
            lines.append(f"{pad}{key}: {_scalar(item)}")
    return "\n".join(lines)


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_YAML_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"}


def _scalar(value) -> str:
    """A YAML scalar: plain when it cannot be read as anything but that string, else JSON-quoted
    (a JSON string is a valid YAML double-quoted scalar)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)


def cmd_package(config, out_dir, args) -> int:
    """`nmforge package CONFIG -o DIR`: write the FuseSoC core package; print what was written."""
    result = package(config, out_dir)
    root = result["core"].parent
    print(f"wrote {', '.join(str(path) for path in result['files'])}")
    print(f"FuseSoC core {result['vlnv']} (targets: {', '.join(result['targets'])}); try:")
    print(f"  fusesoc --cores-root {root} core-info {result['vlnv']}")
    print(f"  fusesoc --cores-root {root} run --target lint {result['vlnv']}")
    return 0
