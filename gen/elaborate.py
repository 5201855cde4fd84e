"""Elaboration: from a validated Config to an Amaranth component and its Verilog text.

`BLOCKS` are the units that can be generated and verified on their own: the whole array (the
design's top level) and, for block-level regressions, one PE and one N:M decoder.
"""
from amaranth.back import verilog

from ..rtl.decoder import NMDecoder
from ..rtl.mac_array import SparseArray
from ..rtl.pe import SparsePE

BLOCKS = ("array", "pe", "decoder")


def build(config, block="array"):
    """The Amaranth component for `block` of the design described by `config`."""
    if block == "array":
        return SparseArray(config.rows, config.cols, config.n, config.m, config.act_width,
                           config.weight_width, config.acc_width, config.overflow)
    if block == "pe":
        return SparsePE(config.n, config.m, config.act_width, config.weight_width,
                        config.acc_width, config.overflow)
    if block == "decoder":
        return NMDecoder(config.n, config.m, config.act_width)
    raise ValueError(f"block: {block!r} is not a block; allowed: {', '.join(BLOCKS)}")


def module_name(config, block="array"):
    """Verilog module name: the config's name for the array, suffixed for sub-blocks."""
    return config.name if block == "array" else f"{config.name}_{block}"


def to_verilog(component, name):
    """Deterministic Verilog text (no source locations, so output does not depend on paths)."""
    return verilog.convert(component, name=name, emit_src=False)
