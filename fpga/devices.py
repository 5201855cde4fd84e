"""Device table of the FPGA flow: one entry per target; add a device by adding an entry.

Each target says how to synthesize (Yosys ``synth_*`` command), how to place and route (nextpnr
flavour, device and package flags, how to run without pin constraints / out of context), and how to
map the technology cells of the synthesized netlist onto the report's resource classes:

* ``LUT4``  cells counted as logic LUTs (exactly what ``yosys stat`` lists as ``LUT4``/``SB_LUT4``);
* ``CARRY`` carry cells (ECP5 ``CCU2C``, iCE40 ``SB_CARRY``);
* ``luts_per_carry`` how many LUT4s of the fabric one carry cell occupies: an ECP5 ``CCU2C`` is a
  pair of LUT4s in a slice (2); an iCE40 ``SB_CARRY`` sits beside an ``SB_LUT4`` that yosys already
  counts (0);
* ``FF``/``DSP``/``BRAM`` cell types (a type ending in ``*`` is a prefix: ``SB_DFF*``);
* ``capacity`` the nextpnr BEL type whose ``available`` count (from nextpnr's JSON report) is the
  device capacity for each class, used for the % column.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEVICES", "TARGETS", "device"]

DEVICES: dict[str, dict[str, Any]] = {
    "ecp5": {
        "family": "ECP5",
        "device": "LFE5U-85F",
        "package": "CABGA381",
        "synth": "synth_ecp5",
        # Keep the hierarchy: ABC9 in YoWASP Yosys 0.70 dies on the flattened netlist of an 8x8
        # array (its WebAssembly heap), while mapping one PE module at a time works.
        "synth_args": ["-noflatten"],
        "nextpnr": "nextpnr-ecp5",
        "pnr_args": ["--85k", "--package", "CABGA381"],
        "ooc_args": ["--out-of-context"],  # None: not supported by this nextpnr flavour
        "unconstrained_args": ["--lpf-allow-unconstrained"],
        "cells": {
            "LUT4": ["LUT4"],
            "CARRY": ["CCU2C"],
            "FF": ["TRELLIS_FF"],
            "DSP": ["MULT18X18D"],
            "BRAM": ["DP16KD"],
        },
        "luts_per_carry": 2,
        "capacity": {
            "LUT4": "TRELLIS_COMB",
            "FF": "TRELLIS_FF",
            "DSP": "MULT18X18D",
            "BRAM": "DP16KD",
        },
    },
    "ice40": {
        "family": "iCE40",
        "device": "iCE40UP5K",
        "package": "SG48",
        "synth": "synth_ice40",
        "synth_args": ["-dsp"],
        "nextpnr": "nextpnr-ice40",
        "pnr_args": ["--up5k", "--package", "sg48"],
        "ooc_args": None,  # nextpnr-ice40 has no --out-of-context: I/O is placed on package pins
        "unconstrained_args": ["--pcf-allow-unconstrained"],
        "cells": {
            "LUT4": ["SB_LUT4"],
            "CARRY": ["SB_CARRY"],
            "FF": ["SB_DFF*"],
            "DSP": ["SB_MAC16"],
            "BRAM": ["SB_RAM40_4K*"],
        },
        "luts_per_carry": 0,
        "capacity": {
            "LUT4": "ICESTORM_LC",
            "FF": "ICESTORM_LC",
            "DSP": "ICESTORM_DSP",
            "BRAM": "ICESTORM_RAM",
        },
    },
}

TARGETS: tuple[str, ...] = tuple(DEVICES)


def device(target: str) -> dict[str, Any]:
    """The device table entry of ``target``; ``ValueError`` for an unknown target."""
    try:
        return DEVICES[target]
    except KeyError:
        raise ValueError(f"unknown FPGA target {target!r}; known: {', '.join(TARGETS)}") from None
