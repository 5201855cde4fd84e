"""AXI4-Stream interfaces (tdata/tvalid/tready/tlast) for the accelerator's edge.

A beat transfers on a rising edge where tvalid and tready are both high; a source holds tdata and
tlast stable while tvalid is high and tready low. In Verilog the members appear as
`<interface>__tdata`, `<interface>__tvalid`, `<interface>__tready`, `<interface>__tlast`.
"""
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


def axis_signature(width):
    """The source side (Out) of an AXI4-Stream of `width` tdata bits; flip it for a sink."""
    return wiring.Signature({"tdata": Out(width), "tlast": Out(1), "tvalid": Out(1),
                             "tready": In(1)})
