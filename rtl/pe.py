"""Sparse processing element: the systolic shell around one PE kind's multiply-accumulate unit.

Each valid beat brings one group of M activations (from the left) and N compressed weights
with their indices (from above); the PE forwards both, registered, to its right and lower
neighbours, routes the N addressed activations through its N:M decoder and hands the N
(activation, weight) pairs to its MAC unit (`mac`, e.g. rtl.mac_int.IntMac).
Pipeline, from the PE's input ports:
  1 input registers (also the systolic forwarding registers)
  2 decoded operands
  then the MAC unit's own `latency`.
"""
from amaranth import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .decoder import NMDecoder, index_layout
from .pipeline import delay

SHELL_LATENCY = 2


def weight_layout(n, m, weight_shape):
    """One column's compressed weights for one group: N values (+ N indices unless dense)."""
    fields = {"values": data.ArrayLayout(weight_shape, n)}
    if n != m:
        fields["indices"] = index_layout(n, m)
    return data.StructLayout(fields)


class SparsePE(wiring.Component):
    """Accumulates, over the beats of a tile, the MAC unit's dot product of the N kept pairs.

    Latency: `latency` cycles from a beat at the input ports to `result`/`result_valid`
    (for the beat marked `last`); the forwarded outputs lag the inputs by 1 cycle.
    """

    def __init__(self, n, m, mac):
        self.n, self.m, self.mac = n, m, mac
        self.latency = SHELL_LATENCY + mac.latency
        mac_ports = mac.signature.members
        self.act_shape = mac_ports["a"].shape.elem_shape
        self.weight_shape = mac_ports["w"].shape.elem_shape
        self.result_shape = mac_ports["result"].shape
        act = data.ArrayLayout(self.act_shape, m)
        weight = weight_layout(n, m, self.weight_shape)
        super().__init__({
            "act": In(act), "weight": In(weight), "valid": In(1), "last": In(1),
            "act_out": Out(act), "weight_out": Out(weight), "valid_out": Out(1), "last_out": Out(1),
            "result": Out(self.result_shape), "result_valid": Out(1), "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = decoder = NMDecoder(self.n, self.m, self.act_shape)
        m.submodules.mac = mac = self.mac

        m.d.comb += [self.act_out.eq(delay(m, self.act, 1, "act", reset_less=True)),
                     self.weight_out.eq(delay(m, self.weight, 1, "weight", reset_less=True))]
        m.d.sync += [self.valid_out.eq(self.valid), self.last_out.eq(self.valid & self.last)]
        m.d.comb += decoder.group.eq(self.act_out)
        if "indices" in decoder.signature.members:
            m.d.comb += decoder.indices.eq(self.weight_out.indices)

        m.d.comb += [
            mac.a.eq(delay(m, decoder.operands, 1, "operands", reset_less=True)),
            mac.w.eq(delay(m, self.weight_out.values, 1, "weights", reset_less=True)),
            mac.valid.eq(delay(m, self.valid_out, 1, "valid", reset_less=False)),
            mac.last.eq(delay(m, self.last_out, 1, "last", reset_less=False)),
            self.result.eq(mac.result), self.result_valid.eq(mac.result_valid),
            self.overflow.eq(mac.overflow),
        ]
        return m
