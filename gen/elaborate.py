"""Elaboration: from a validated Config to an Amaranth component and its Verilog text.

`BLOCKS` are the units that can be generated and verified on their own: the whole array (the
design's top level) and, for block-level regressions, one PE, one N:M decoder and one MAC unit
(the PE kind's multiply-accumulate unit alone, without the systolic shell and decoder).
"""
from amaranth.back import rtlil, verilog
from amaranth.utils import ceil_log2

from ..rtl.accelerator import Accelerator
from ..rtl.isa import AcceleratorShape
from ..rtl.decoder import BitmapDecoder, GroupedDecoder, NMDecoder, RuntimeNMDecoder
from ..rtl.mac_array import DotProductArray, SparseArray
from ..rtl.mac_fp import FpMac
from ..rtl.mac_int import IntMac
from ..rtl import mac_scalable
from ..rtl.mac_scalable import ScalableMac
from ..rtl.mac_mpgemm import MpgemmMac
from ..rtl.mac_mx import MxMac
from ..rtl.mac_bitserial import BitserialMac
from ..rtl.mac_posit import PositMac
from ..rtl.pe import SparsePE
from ..rtl.ws_array import StationaryPE, WeightStationaryArray
from ..rtl.ws_partials import (ExactFpPartialSum, Fp32PartialSum, IntPartialSum,
                               MpgemmPartialSum, MxPartialSum, PositPartialSum)

BLOCKS = ("array", "pe", "decoder", "mac", "accelerator")

# One MAC unit builder per implemented PE kind (config `pe.kind`; gen.config.PE_KIND_SCHEMAS),
# for N multipliers per beat of M activations.
MAC_BUILDERS = {
    "int": lambda c, n, m: IntMac(n, c.act_width, c.weight_width, c.acc_width, c.overflow),
    "fp": lambda c, n, m: FpMac(n, c.act_format, c.weight_format, c.accumulate),
    "scalable": lambda c, n, m: ScalableMac(n, c.acc_width, c.overflow),
    "mpgemm": lambda c, n, m: MpgemmMac(n, m, c.act_format, c.weight_format, c.group_size,
                                        c.out_width),
    "bitserial": lambda c, n, m: BitserialMac(n, c.act_width, c.weight_width, c.acc_width,
                                              c.overflow),
    "posit": lambda c, n, m: PositMac(n, c.format),
    "mx": lambda c, n, m: MxMac(n, m, c.format, c.block_size),
}

# One decoder per metadata encoding (config `sparsity.encoding`).
DECODERS = {"index": NMDecoder, "bitmap": BitmapDecoder}


def beat_groups(config):
    """K-groups of M one PE reduces per beat: the dot-product array's `rows`, else 1."""
    return config.rows if config.dataflow == "dot_product" else 1


def make_stationary_pe(config):
    """A weight-stationary PE: behind the encoding's decoder, the kind's MAC unit giving each
    beat's exact sum (int, scalable, bitserial: wide enough, every beat a tile; fp, mx, posit,
    mpgemm: `beat_sums`); partial sums (rtl.ws_partials) on the config's accumulator width and
    policy (int, scalable, bitserial), FP32 additions (fp, accumulate "fp32"), exact and
    finished after the array (fp exact: rounded to FP32; posit: the quire rounded), or exact per
    block and closed block by block (mx: in FP32; mpgemm: scaled, then requantized)."""
    if config.pe_kind == "fp":
        mac = FpMac(config.n, config.act_format, config.weight_format, config.accumulate,
                    beat_sums=True)
        partial = ExactFpPartialSum(mac.sum) if config.accumulate == "exact" else Fp32PartialSum()
    elif config.pe_kind == "mx":
        mac = MxMac(config.n, config.m, config.format, config.block_size, beat_sums=True)
        partial = MxPartialSum(mac.block_sum)
    elif config.pe_kind == "posit":
        mac = PositMac(config.n, config.format, beat_sums=True)
        partial = PositPartialSum(mac)
    elif config.pe_kind == "mpgemm":
        mac = MpgemmMac(config.n, config.m, config.act_format, config.weight_format,
                        config.group_size, config.out_width, beat_sums=True)
        partial = MpgemmPartialSum(mac)
    elif config.pe_kind == "bitserial":   # each beat's plane, shifted and signed, exactly
        exact = config.act_width + config.weight_width + ceil_log2(config.n) + 1
        mac = BitserialMac(config.n, config.act_width, config.weight_width, exact, "wrap")
        partial = IntPartialSum(config.acc_width, config.overflow)
    elif config.pe_kind == "scalable":   # lane values up to 2^30 (INT16 pieces): exact beats
        mac = ScalableMac(config.n, 32 + ceil_log2(config.n) + 1, "wrap")
        partial = IntPartialSum(config.acc_width, config.overflow)
    else:
        exact = config.act_width + config.weight_width + ceil_log2(config.n) + 1
        mac = IntMac(config.n, config.act_width, config.weight_width, exact, "wrap")
        partial = IntPartialSum(config.acc_width, config.overflow)
    return StationaryPE(mac, make_decoder(config, mac), partial)


def make_mac(config):
    """A fresh MAC unit of the config's PE kind, with a multiplier per kept weight of a beat
    (N per K-group, `beat_groups` groups)."""
    groups = beat_groups(config)
    return MAC_BUILDERS[config.pe_kind](config, config.n * groups, config.m * groups)


def make_decoder(config, mac):
    """A fresh decoder of the config's encoding for the activation elements of `mac` (the
    run-time pattern decoder when `sparsity.runtime` is set; `beat_groups` of them side by
    side when a beat holds several groups)."""
    act_shape = mac.signature.members["a"].shape.elem_shape
    if config.runtime:
        return RuntimeNMDecoder(config.n, config.m, act_shape)
    groups = beat_groups(config)
    if groups > 1:
        return GroupedDecoder(groups, lambda: DECODERS[config.encoding](config.n, config.m,
                                                                         act_shape))
    return DECODERS[config.encoding](config.n, config.m, act_shape)


def make_pe(config):
    """A fresh PE: the kind's MAC unit behind the encoding's decoder."""
    mac = make_mac(config)
    return SparsePE(mac, make_decoder(config, mac))


def _int_parameters(mac) -> dict:
    return {"act_width": mac.act_width, "weight_width": mac.weight_width,
            "acc_width": mac.acc_width, "overflow": "saturate" if mac.saturate else "wrap"}


def _fp_parameters(mac) -> dict:
    return {"act_format": mac.act_format, "weight_format": mac.weight_format,
            "accumulate": mac.accumulate, "result_format": "fp32", "acc_bits": mac.acc_bits,
            "max_products": mac.max_products, "lanes": mac.lanes}


def _scalable_parameters(mac) -> dict:
    modes = {"int8": mac_scalable.MODE_INT8, "int4": mac_scalable.MODE_INT4,
             "int2": mac_scalable.MODE_INT2, "off": mac_scalable.MODE_OFF,
             "int16_ll": mac_scalable.MODE_INT16_LL, "int16_hl": mac_scalable.MODE_INT16_HL,
             "int16_lh": mac_scalable.MODE_INT16_LH, "int16_hh": mac_scalable.MODE_INT16_HH}
    return {"lane_width": mac.act_width, "modes": modes, "int16": mac.int16,
            "acc_width": mac.acc_width, "overflow": "saturate" if mac.saturate else "wrap",
            "multipliers": mac.multipliers}


def _mpgemm_parameters(mac) -> dict:
    return {"act_format": mac.act_format, "weight_format": mac.weight_format,
            "group_size": mac.group_size, "out_width": mac.out_width, "acc_bits": mac.acc_bits,
            "max_tile_k": mac.max_tile_k, "u_bits": mac.u_bits, "r_bits": mac.r_bits,
            "rounding": "half up", "output": "saturate"}


def _bitserial_parameters(mac) -> dict:
    return {"act_width": mac.act_width, "weight_width": mac.weight_width,
            "acc_width": mac.acc_width, "overflow": "saturate" if mac.saturate else "wrap",
            "plane_bits": mac.plane_bits}


def _posit_parameters(mac) -> dict:
    return {"format": mac.format, "result_format": mac.format, "quire_bits": mac.quire_bits,
            "quire_lsb_exp": -2 * mac.max_scale, "quire_chunks": mac.chunks}


def _mx_parameters(mac) -> dict:
    return {"format": mac.format, "element_format": mac.elem.name, "block_size": mac.block_size,
            "scale_format": "e8m0", "beats_per_block": mac.beats_per_block,
            "scale_sampled": "last beat of each block", "result_format": "fp32",
            "block_acc_bits": mac.block_acc_bits, "lanes": mac.lanes}


# Per kind: the MAC unit's arithmetic facts for the manifest's `pe` section.
MAC_DESCRIBERS = {"int": _int_parameters, "fp": _fp_parameters, "scalable": _scalable_parameters, "mpgemm": _mpgemm_parameters,
                  "bitserial": _bitserial_parameters, "posit": _posit_parameters,
                  "mx": _mx_parameters}


def mac_parameters(config, mac) -> dict:
    """The manifest's `pe` section: kind, the kind's arithmetic (formats, accumulation mode and
    widths) and the MAC unit's own latency."""
    params = {"kind": config.pe_kind, **MAC_DESCRIBERS[config.pe_kind](mac),
              "mac_latency": mac.latency}
    if config.dataflow == "weight_stationary" and "overflow" in params:
        # the MAC gives exact beat sums; the design's accumulator is the partial sums'
        params |= {"beat_sum_bits": params["acc_width"], "acc_width": config.acc_width,
                   "overflow": config.overflow}
    return params


def build(config, block="array"):
    """The Amaranth component for `block` of the design described by `config`."""
    if block == "array":
        if config.dataflow == "weight_stationary":
            return WeightStationaryArray(config.rows, config.cols,
                                         lambda: make_stationary_pe(config), name=config.name)
        array_class = DotProductArray if config.dataflow == "dot_product" else SparseArray
        return array_class(config.rows, config.cols, lambda: make_pe(config), name=config.name)
    if block == "accelerator":
        if not config.accelerator:
            raise ValueError("block: 'accelerator' needs an [accelerator] table in the config")
        return Accelerator(AcceleratorShape.from_config(config), build(config, "array"))
    if block == "pe":
        return make_stationary_pe(config) if config.dataflow == "weight_stationary" else make_pe(config)
    if block == "decoder":
        mac = make_mac(config)
        mac._MustUse__silence = True  # built only for its activation shape (Amaranth's opt-out)
        return make_decoder(config, mac)
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
        return component.pe.mac
    if block == "accelerator":
        return component.array.pe.mac
    return None


def module_name(config, block="array"):
    """Verilog module name: the config's name for the array, suffixed for sub-blocks."""
    return config.name if block in ("array", "accelerator") else f"{config.name}_{block}"


def shared_modules(component) -> dict:
    """Module name -> component, for the modules `component` instantiates by name: a
    SparseArray's PE and result slot, whether `component` is the array, holds it as `array`
    (the accelerator, the board's LinkedArray) or holds an accelerator (LinkedAccelerator)."""
    holder = getattr(component, "accelerator", component)
    array = component if isinstance(component, SparseArray) else getattr(holder, "array", None)
    return array.shared_modules if isinstance(array, SparseArray) else {}


def to_verilog(component, name, emit_src=False):
    """Deterministic Verilog text (without `emit_src`, no source locations, so output does not
    depend on paths):
    module `name` and its submodules, plus one definition of each shared module (an array's
    PE and result slot, each converted once however many positions instantiate it); one Yosys
    run converts them all."""
    texts = [rtlil.convert(component, name=name, emit_src=emit_src)]
    for module, definition in shared_modules(component).items():
        text = rtlil.convert(definition, name=module, emit_src=emit_src)
        texts.append(text.replace("attribute \\top 1\n", "", 1))  # `name` stays the only top
    return verilog._convert_rtlil_text("".join(texts))  # what verilog.convert runs on its RTLIL
