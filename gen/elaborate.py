"""Elaboration: from a validated Config to an Amaranth component and its Verilog text.

`BLOCKS` are the units that can be generated and verified on their own: the whole array (the
design's top level) and, for block-level regressions, one PE, one N:M decoder and one MAC unit
(the PE kind's multiply-accumulate unit alone, without the systolic shell and decoder).
"""
from amaranth import signed, unsigned
from amaranth.back import verilog

from ..rtl.decoder import NMDecoder
from ..rtl.mac_array import SparseArray
from ..rtl.mac_fp import FpMac
from ..rtl.mac_int import IntMac
from ..rtl.pe import SparsePE

BLOCKS = ("array", "pe", "decoder", "mac")

# One MAC unit builder per implemented PE kind (config `pe.kind`; gen.config.PE_KIND_SCHEMAS).
MAC_BUILDERS = {
    "int": lambda c: IntMac(c.n, c.act_width, c.weight_width, c.acc_width, c.overflow),
    "fp": lambda c: FpMac(c.n, c.act_format, c.weight_format, c.accumulate),
}


# Per kind: the shape of one activation element on the ports (the decoder routes these).
ACT_SHAPES = {
    "int": lambda c: signed(c.act_width),
    "fp": lambda c: unsigned(c.act_bits),
}


def make_mac(config):
    """A fresh MAC unit of the config's PE kind."""
    return MAC_BUILDERS[config.pe_kind](config)


def _int_parameters(mac) -> dict:
    return {"act_width": mac.act_width, "weight_width": mac.weight_width,
            "acc_width": mac.acc_width, "overflow": "saturate" if mac.saturate else "wrap"}


def _fp_parameters(mac) -> dict:
    return {"act_format": mac.act_format, "weight_format": mac.weight_format,
            "accumulate": mac.accumulate, "result_format": "fp32", "acc_bits": mac.acc_bits,
            "max_products": mac.max_products, "lanes": mac.lanes}


# Per kind: the MAC unit's arithmetic facts for the manifest's `pe` section.
MAC_DESCRIBERS = {"int": _int_parameters, "fp": _fp_parameters}


def mac_parameters(config, mac) -> dict:
    """The manifest's `pe` section: kind, the kind's arithmetic (formats, accumulation mode and
    widths) and the MAC unit's own latency."""
    return {"kind": config.pe_kind, **MAC_DESCRIBERS[config.pe_kind](mac),
            "mac_latency": mac.latency}


def build(config, block="array"):
    """The Amaranth component for `block` of the design described by `config`."""
    if block == "array":
        return SparseArray(config.rows, config.cols, config.n, config.m, lambda: make_mac(config))
    if block == "pe":
        return SparsePE(config.n, config.m, make_mac(config))
    if block == "decoder":
        return NMDecoder(config.n, config.m, ACT_SHAPES[config.pe_kind](config))
    if block == "mac":
        return make_mac(config)
    raise ValueError(f"block: {block!r} is not a block; allowed: {', '.join(BLOCKS)}")


def find_mac(component, block):
    """The (first) MAC unit inside a built block; None for the decoder."""
    if block == "mac":
        return component
    if block == "pe":
        return component.mac
    if block == "array":
        return component.pes[0][0].mac
    return None


def module_name(config, block="array"):
    """Verilog module name: the config's name for the array, suffixed for sub-blocks."""
    return config.name if block == "array" else f"{config.name}_{block}"


def to_verilog(component, name):
    """Deterministic Verilog text (no source locations, so output does not depend on paths)."""
    return verilog.convert(component, name=name, emit_src=False)
