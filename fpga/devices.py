"""Device table of the FPGA flow: targets (families) and their devices; add a device by adding an entry.

`FAMILIES` holds one entry per target (``ecp5``, ``ice40``, ``gowin``): what the devices of a family
share, plus ``devices`` (name -> the device's own fields) and ``default_device``.  `device` merges a
family entry with one of its devices into the flat dict the flow reads; `DEVICES` holds that flat
dict for each target's default device (``DEVICES["ecp5"]["synth_args"]`` ...).

Family fields:

* ``family`` display name; ``synth`` the Yosys ``synth_*`` command; ``synth_args`` its options
  (the device's own ``synth_args`` are appended); ``pre_synth`` / ``post_synth`` Yosys commands run
  before / after it, with ``{top}`` replaced by the placed top module (ECP5: public wire names
  before ABC9; Gowin: I/O buffers on the top's ports only);
* ``pack_dsp_registers`` run `nmforge.fpga.dsp_pack` on the netlist (ECP5); ``pack_bram_registers``
  `nmforge.fpga.bram_pack` (ECP5);
* ``nextpnr`` the nextpnr flavour (a tool of `nmforge.fpga.tools`); ``pnr_args`` options after the
  device's own ``device_args`` (the merged entry's ``pnr_args`` is ``device_args + pnr_args``);
* ``ooc_args`` options for an out-of-context run, ``None`` when the flavour has none;
  ``unconstrained_args`` options that let I/O go unconstrained (ECP5 / iCE40);
  ``pin_constraints`` when every I/O must be constrained (Gowin): the file ``format`` (``cst``)
  and the nextpnr options naming it (``{path}``); the device gives the ``pins`` of the harness'
  ports (roles ``clock``, ``reset``, ``din``, ``dout``);
* ``harness`` whether an out-of-context run (the default) wraps the design in the register harness
  of `nmforge.fpga.harness` and places that on the package instead; it must be ``True`` for a family
  without an out-of-context mode (``ooc_args`` ``None``), and defaults to exactly that when absent;
* ``cells`` the netlist cell types of each resource class (a type ending in ``*`` is a prefix):
  ``LUT4`` logic LUTs (exactly what ``yosys stat`` lists), ``CARRY`` carry cells, ``LUTRAM``
  distributed-RAM cells, ``FF``, ``DSP``, ``BRAM``;
* ``lut4_kinds`` the kinds of fabric LUT4 use, in nextpnr's words, each as ``(cell class, LUT4s per
  cell)``; their sum is ``LUT4_total``.  ECP5 (nextpnr-ecp5's "Total LUT4s" and the four lines
  under it): ``logic`` 1 per ``LUT4``, ``carry`` 2 per ``CCU2C`` (a pair of LUT4s in a slice),
  ``ram`` 4 and ``ramw`` 2 per ``TRELLIS_DPR16X4`` (a 16x4 distributed RAM: the LUTs holding the
  data, and the write-port LUTs of the slice beside them).  iCE40: ``logic`` only (an ``SB_CARRY``
  sits in the logic cell of an ``SB_LUT4`` that is already counted; no distributed RAM).  Gowin:
  ``logic`` and ``carry`` 1 per ``ALU`` (one LUT4 in ALU mode); its ``RAM16SDP4`` shadow RAMs are
  listed as ``LUTRAM`` cells (nextpnr-himbaechel-gowin prints no LUT4 total to convert them with);
* ``dsp_units`` (optional) how many units of the device's DSP capacity one DSP cell occupies, when
  the cell types differ in size (Gowin: in 9x9 multipliers, ``MULT18X18`` = 2); default 1 each;
  ``dsp_unit`` names the unit;
* ``cell_models`` (optional) Yosys' simulation models of the family's cells (a file of its data
  directory): the flow then also writes the synthesized netlist as Verilog (``netlist.v``), which
  simulates with them at gate level (tests/test_fpga_gate_level.py);
* ``timing_note`` (optional) a limit of the family's timing analysis, copied into the report of a
  design that uses DSP blocks;
* ``capacity_bels`` the nextpnr BEL type counting each class (``utilization`` of nextpnr's JSON
  report), to cross-check ``capacity``, to read the I/O pins used and to report what the placed
  design occupies (the report's ``placed``).

Device fields: ``package``, ``device_args`` (nextpnr device/package selection), optionally
``synth_args``, ``part`` (full part number), ``board`` (a board carrying it), ``aliases`` (other
accepted names, matched case-insensitively like the name), ``pins`` (harness pins), ``notes``; and
``capacity``: what the device offers per class -- ``LUT4`` (LUT4s, carry included), ``FF``, ``DSP``
(in ``dsp_unit``s), ``BRAM`` (block RAMs), ``IO`` (user I/O pins of the package) -- the denominators
of the report's percentages.  Fabric numbers equal nextpnr's BEL counts (``tests/test_fpga_targets``
checks them on real runs); ``IO`` is the package's user I/O from the vendor data sheets (ECP5:
nextpnr counts the die's pads, 365 on an 85F, not the 205 bonded in a CABGA381), the Gowin ones
are the package pin lists of the Apicula database that nextpnr-himbaechel-gowin uses.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["FAMILIES", "DEVICES", "TARGETS", "device", "device_names", "resolve_device", "RESOURCE_KINDS"]

RESOURCE_KINDS: tuple[str, ...] = ("LUT4", "FF", "DSP", "BRAM", "IO")

FAMILIES: dict[str, dict[str, Any]] = {
    "ecp5": {
        "family": "ECP5",
        "synth": "synth_ecp5",
        # Keep the hierarchy: ABC9 in YoWASP Yosys 0.70 dies on the flattened netlist of an 8x8
        # array (its WebAssembly heap), while mapping one PE module at a time works.
        "synth_args": ["-noflatten"],
        # Public names for every wire first: on the array module that instantiates the shared PE
        # and result-slot modules, ABC9's reintegration in YoWASP Yosys 0.70 asserts (`wire' at
        # abc_ops_reintegrate.cc:596) on the internal names; `autoname` only renames. Amaranth
        # names a data view's fields `x[3]` / `x[3].values[1]`; ABC9 names bit 1 of wire
        # `x[3].values` the same, and reintegration asserts on the duplicate (rtlil.cc:2872, seen
        # on the accelerator's execute unit): such names are made private first (`rename -hide`).
        "pre_synth": ["hierarchy -top {top}", "rename -hide w:*]", "autoname"],
        # Move the flip-flops around multipliers into the MULT18X18D input and output registers
        # (fpga/dsp_pack.py): Yosys leaves them in the fabric, tiles away from the block.
        "pack_dsp_registers": True,
        # And the read registers behind the DP16KD block RAMs into their output registers
        # (fpga/bram_pack.py): without them a block's clock-to-out is 5.8 ns of an 8.3 ns cycle.
        "pack_bram_registers": True,
        "nextpnr": "nextpnr-ecp5",
        # A heavier timing weight in the placer: the MULT18X18D sites sit in rows apart from
        # the logic, and the default weight leaves the register -> DSP -> register paths of a
        # full 8x8 array at 82-98 MHz (measured). No `--tmg-ripup`: on a design that misses
        # timing it rips up and reroutes without end (the 4x4 accelerator: 28 rounds in 15 min
        # at -4.5 ns), and the 8x8 array meets 120 MHz without it (125.0 MHz either way).
        "pnr_args": ["--placer-heap-timingweight", "40"],
        "ooc_args": ["--out-of-context"],
        "harness": False,  # blocks are placed out of context (harness only when asked)
        "unconstrained_args": ["--lpf-allow-unconstrained"],
        "cells": {
            "LUT4": ["LUT4"],
            "CARRY": ["CCU2C"],
            "LUTRAM": ["TRELLIS_DPR16X4"],
            "FF": ["TRELLIS_FF"],
            "DSP": ["MULT18X18D"],
            "BRAM": ["DP16KD"],
        },
        "lut4_kinds": {"logic": ("LUT4", 1), "carry": ("CARRY", 2), "ram": ("LUTRAM", 4),
                       "ramw": ("LUTRAM", 2)},
        "dsp_unit": "MULT18X18D",
        "capacity_bels": {"LUT4": "TRELLIS_COMB", "LUTRAM": "TRELLIS_RAMW", "FF": "TRELLIS_FF", "DSP": "MULT18X18D",
                          "BRAM": "DP16KD", "IO": "TRELLIS_IO"},
        "default_device": "LFE5U-85F",
        # CABGA381 exists for all three (nextpnr-ecp5 --package CABGA381, its default); user I/O
        # in it: 197 / 203 / 205 (ECP5 family data sheet).
        "devices": {
            "LFE5U-25F": {"package": "CABGA381", "device_args": ["--25k", "--package", "CABGA381"],
                          "aliases": ["25k", "25F"],
                          "capacity": {"LUT4": 24288, "FF": 24288, "DSP": 28, "BRAM": 56, "IO": 197}},
            "LFE5U-45F": {"package": "CABGA381", "device_args": ["--45k", "--package", "CABGA381"],
                          "aliases": ["45k", "45F"],
                          "capacity": {"LUT4": 43848, "FF": 43848, "DSP": 72, "BRAM": 108, "IO": 203}},
            "LFE5U-85F": {"package": "CABGA381", "device_args": ["--85k", "--package", "CABGA381"],
                          "aliases": ["85k", "85F"],
                          "capacity": {"LUT4": 83640, "FF": 83640, "DSP": 156, "BRAM": 208, "IO": 205}},
        },
    },
    "ice40": {
        "family": "iCE40",
        "synth": "synth_ice40",
        "synth_args": [],
        "nextpnr": "nextpnr-ice40",
        "pnr_args": [],
        "ooc_args": None,  # nextpnr-ice40 has no --out-of-context: I/O is placed on package pins
        "harness": True,  # so a block is placed inside the register harness (4 pins)
        "unconstrained_args": ["--pcf-allow-unconstrained"],
        "cells": {
            "LUT4": ["SB_LUT4"],
            "CARRY": ["SB_CARRY"],
            "LUTRAM": [],
            "FF": ["SB_DFF*"],
            "DSP": ["SB_MAC16"],
            "BRAM": ["SB_RAM40_4K*"],
        },
        "lut4_kinds": {"logic": ("LUT4", 1)},
        "dsp_unit": "SB_MAC16",
        "cell_models": "ice40/cells_sim.v",
        # A logic cell (ICESTORM_LC) is one LUT4 + one flip-flop: both classes count against it.
        "capacity_bels": {"LUT4": "ICESTORM_LC", "FF": "ICESTORM_LC", "DSP": "ICESTORM_DSP",
                          "BRAM": "ICESTORM_RAM", "IO": "SB_IO"},
        "default_device": "iCE40UP5K",
        "devices": {
            "iCE40UP5K": {"package": "SG48", "device_args": ["--up5k", "--package", "sg48"],
                          "synth_args": ["-dsp"],  # multipliers into the 8 SB_MAC16
                          "aliases": ["up5k"],
                          "capacity": {"LUT4": 5280, "FF": 5280, "DSP": 8, "BRAM": 30, "IO": 39}},
            "iCE40HX8K": {"package": "CT256", "device_args": ["--hx8k", "--package", "ct256"],
                          "synth_args": [],  # no DSP blocks: multipliers are built from LUTs
                          "aliases": ["hx8k"],
                          "capacity": {"LUT4": 7680, "FF": 7680, "DSP": 0, "BRAM": 32, "IO": 206}},
        },
    },
    "gowin": {
        "family": "Gowin",
        "synth": "synth_gowin",
        # -noiopads: synth_gowin's iopadmap would also put IBUF/OBUF on the ports of a kept
        # submodule (the array inside the harness); post_synth adds them on the placed top only.
        "synth_args": ["-noiopads"],
        "post_synth": ["iopadmap -bits -inpad IBUF O:I -outpad OBUF I:O -toutpad TBUF ~OEN:I:O "
                       "-tinoutpad IOBUF ~OEN:O:I:IO {top}", "clean"],
        "nextpnr": "nextpnr-himbaechel-gowin",
        "pnr_args": [],
        "ooc_args": None,  # no out-of-context mode, and every I/O needs a pin: the register harness
        "harness": True,
        "unconstrained_args": [],
        "pin_constraints": {"format": "cst", "args": ["--vopt", "cst={path}"]},
        "cells": {
            "LUT4": ["LUT1", "LUT2", "LUT3", "LUT4"],
            "CARRY": ["ALU"],
            "LUTRAM": ["RAM16S*"],
            "FF": ["DFF*"],
            "DSP": ["MULT9X9", "MULT18X18", "MULT36X36", "MULTALU18X18", "MULTALU36X18",
                    "MULTADDALU18X18", "ALU54D", "PADD9", "PADD18"],
            "BRAM": ["SP", "SPX9", "SDP", "SDPX9", "SDPB", "SDPX9B", "DP", "DPX9", "DPB", "DPX9B",
                     "ROM", "ROMX9", "pROM", "pROMX9"],
        },
        "lut4_kinds": {"logic": ("LUT4", 1), "carry": ("CARRY", 1)},
        # nextpnr-himbaechel-gowin: a DSP macro holds 4 MULT9X9 = 2 MULT18X18 = 1 MULTALU18X18 /
        # MULTADDALU18X18 / MULTALU36X18 / ALU54D, a MULT36X36 takes two macros (GW1N-9C: 40 / 20
        # / 10 / 5 of them); Yosys maps an 8x8 multiply to one MULT9X9.
        "dsp_unit": "MULT9X9",
        "dsp_units": {"MULT9X9": 1, "PADD9": 1, "MULT18X18": 2, "PADD18": 2, "MULTALU18X18": 4,
                      "MULTADDALU18X18": 4, "MULTALU36X18": 4, "ALU54D": 4, "MULT36X36": 8},
        "capacity_bels": {"LUT4": "LUT4", "CARRY": "ALU", "LUTRAM": "RAM16SDP4", "FF": "DFF", "DSP": "MULT9X9",
                          "BRAM": "BSRAM", "IO": "IOB"},
        # Measured: in reg -> MULT9X9 -> 17-bit ALU chain -> reg the critical path starts after the
        # multiplier (at the adder's other register), and with a multiplier feeding flip-flops the
        # routed design reports "No Fmax available; no interior timing paths found in design".
        "timing_note": "nextpnr-himbaechel-gowin 0.11.1 does not time the DSP blocks: paths through "
                       "the multipliers are not in Fmax (and a multiplier feeding flip-flops can leave "
                       "no timed path at all)",
        # GW2A-18 by default: the 4x4 2:4 INT8 example fills 78 % of the GW1NR-9's 6480 flip-flops
        # with the harness, where nextpnr's legalizer fails or not depending on the netlist order.
        "default_device": "GW2A-18",
        "devices": {
            # Sipeed Tang Nano 9K: clock 27 MHz on pin 52, button S1 on 3, UART rx 18 / tx 17.
            "GW1NR-9": {"part": "GW1NR-LV9QN88PC6/I5", "package": "QN88P", "board": "Tang Nano 9K",
                        "device_args": ["--device", "GW1NR-LV9QN88PC6/I5", "--vopt", "family=GW1N-9C"],
                        "synth_args": ["-family", "gw1n"],
                        "aliases": ["GW1NR-LV9QN88PC6/I5", "tangnano9k"],
                        "pins": {"clock": "52", "reset": "3", "din": "18", "dout": "17"},
                        "capacity": {"LUT4": 8640, "FF": 6480, "DSP": 40, "BRAM": 26, "IO": 71}},
            # Sipeed Tang Primer 20K: clock 27 MHz on H11, dock button on T10, UART rx T13 / tx M11.
            "GW2A-18": {"part": "GW2A-LV18PG256C8/I7", "package": "PG256", "board": "Tang Primer 20K",
                        "device_args": ["--device", "GW2A-LV18PG256C8/I7", "--vopt", "family=GW2A-18C"],
                        "synth_args": ["-family", "gw2a"],
                        "aliases": ["GW2A-LV18PG256C8/I7", "tangprimer20k"],
                        "pins": {"clock": "H11", "reset": "T10", "din": "T13", "dout": "M11"},
                        "capacity": {"LUT4": 20736, "FF": 15552, "DSP": 96, "BRAM": 46, "IO": 207}},
        },
    },
}

TARGETS: tuple[str, ...] = tuple(FAMILIES)

_FAMILY_ONLY = ("devices", "default_device")


def _family(target: str) -> dict[str, Any]:
    try:
        return FAMILIES[target]
    except KeyError:
        raise ValueError(f"unknown FPGA target {target!r}; known: {', '.join(TARGETS)}") from None


def device_names(target: str) -> tuple[str, ...]:
    """The device names of ``target`` (the default first)."""
    fam = _family(target)
    default = fam["default_device"]
    return (default, *(name for name in fam["devices"] if name != default))


def resolve_device(target: str, name: str | None = None) -> str:
    """The canonical device name of ``target`` for ``name`` (a name or an alias, any case; ``None``:
    the default); ``ValueError`` (one line listing the allowed names) for a device of another target
    or none."""
    fam = _family(target)
    if name is None:
        return fam["default_device"]
    want = str(name).strip().lower()
    for canonical, entry in fam["devices"].items():
        if want == canonical.lower() or want in (a.lower() for a in entry.get("aliases", ())):
            return canonical
    raise ValueError(f"unknown device {name!r} for target {target}; allowed: {', '.join(device_names(target))}")


def device(target: str, name: str | None = None) -> dict[str, Any]:
    """The flat device-table entry of device ``name`` (default: the target's default device) of
    ``target``: the family's fields merged with the device's (see the module docstring), plus
    ``target`` and ``device`` (the canonical name).  ``ValueError`` for an unknown target or device."""
    fam = _family(target)
    canonical = resolve_device(target, name)
    own = fam["devices"][canonical]
    merged = {k: copy.deepcopy(v) for k, v in fam.items() if k not in _FAMILY_ONLY}
    for key, value in own.items():
        if key not in ("synth_args", "device_args"):
            merged[key] = copy.deepcopy(value)
    merged["synth_args"] = [*fam.get("synth_args", []), *own.get("synth_args", [])]
    merged["pnr_args"] = [*own.get("device_args", []), *fam.get("pnr_args", [])]
    merged["device_args"] = list(own.get("device_args", []))
    merged["target"] = target
    merged["device"] = canonical
    merged.setdefault("part", canonical)
    return merged


# The default device of each target, flat (what callers that only know the target read).
DEVICES: dict[str, dict[str, Any]] = {target: device(target) for target in TARGETS}
