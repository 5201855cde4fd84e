"""Pack and unpack port bits using the manifest's JSON layout trees (see gen/manifest.py).

Values mirror the layout: an int for "int", a sequence (list or numpy array) for "array", a
dict for "struct"; a non-negative int for an "array" or "struct" layout is taken as its raw
bits (e.g. a PE kind's struct element already packed). Unpacking returns ints, nested lists and
dicts.
"""
import operator


def layout_width(layout) -> int:
    if layout["kind"] == "int":
        return layout["width"]
    if layout["kind"] == "array":
        return layout["length"] * layout["stride"]
    return layout["width"]


def pack(layout, value) -> int:
    """The bit pattern of `value` laid out as `layout` (element 0 / offset 0 at the LSB)."""
    kind = layout["kind"]
    if kind == "int":
        width, value = layout["width"], int(value)
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if layout["signed"] else (0, (1 << width) - 1)
        if not lo <= value <= hi:
            raise ValueError(f"{value} does not fit a {'signed' if layout['signed'] else 'unsigned'} "
                             f"{width}-bit field")
        return value & ((1 << width) - 1)
    if not isinstance(value, (dict, list, tuple)) and not hasattr(value, "__len__"):
        bits, width = operator.index(value), layout_width(layout)
        if not 0 <= bits < 1 << width:
            raise ValueError(f"raw bits {bits} do not fit a {width}-bit {kind}")
        return bits
    if kind == "array":
        if len(value) != layout["length"]:
            raise ValueError(f"expected {layout['length']} elements, got {len(value)}")
        bits = 0
        for i, element in enumerate(value):
            bits |= pack(layout["element"], element) << (i * layout["stride"])
        return bits
    bits = 0
    for name, field in layout["fields"].items():
        bits |= pack(field["layout"], value[name]) << field["offset"]
    return bits


def unpack(layout, bits: int):
    """Inverse of `pack`."""
    kind = layout["kind"]
    if kind == "int":
        width = layout["width"]
        bits &= (1 << width) - 1
        if layout["signed"] and bits >> (width - 1):
            bits -= 1 << width
        return bits
    if kind == "array":
        mask = (1 << layout["stride"]) - 1
        return [unpack(layout["element"], (bits >> (i * layout["stride"])) & mask)
                for i in range(layout["length"])]
    return {name: unpack(field["layout"], bits >> field["offset"])
            for name, field in layout["fields"].items()}
