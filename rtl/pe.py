"""Sparse processing element: the systolic shell around one PE kind's multiply-accumulate unit.

Each valid beat brings one group of M activations (from the left) and N compressed weights
with their metadata (from above); the PE forwards both, registered, to its right and lower
neighbours, routes the N addressed activations through its N:M decoder and hands the N
(activation, weight) pairs to its MAC unit (`mac`, e.g. rtl.mac_int.IntMac).
Pipeline, from the PE's input ports:
  1 input registers (also the systolic forwarding registers)
  2 decoded operands
  then the MAC unit's own `latency`.
"""
from amaranth import Module, Mux
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .decoder import metadata_ports
from .pipeline import delay

SHELL_LATENCY = 2


def mac_side(mac, name):
    """The layout of a MAC unit's optional per-beat side input (`a_side` / `w_side`), or None."""
    members = mac.signature.members
    return members[name].shape if name in members else None


def weight_layout(n, weight_shape, metadata, side=None):
    """One column's weights for one beat: N values, the decoder's metadata fields (e.g. N
    indices; none when dense) and the MAC's weight side value when it has one."""
    fields = {"values": data.ArrayLayout(weight_shape, n), **metadata}
    if side is not None:
        fields["side"] = side
    return data.StructLayout(fields)


class SparsePE(wiring.Component):
    """Accumulates, over the beats of a tile, the MAC unit's dot product of the N kept pairs.

    `decoder` (rtl.decoder) picks the N operands from the beat's group of activations; its
    metadata inputs become fields of the weight port. A MAC with an `a_side` input gets an
    `act_side` port (forwarded right like the activations, `act_side_out`); one with `w_side`
    gets a `side` field in the weight port. `malformed` is the decoder's flag for the beat at
    the forwarded outputs (valid beats only); a decoder with `bad_groups` (several groups per
    beat) gives the PE a `bad_groups` output, the decoder's count on valid beats.
    Latency: `latency` cycles from a beat at the input ports to `result`/`result_valid`
    (for the beat marked `last`); the forwarded outputs lag the inputs by 1 cycle.
    """

    def __init__(self, mac, decoder):
        self.mac, self.decoder = mac, decoder
        self.n, self.m = decoder.n, decoder.m
        self.latency = SHELL_LATENCY + mac.latency
        mac_ports = mac.signature.members
        self.act_shape = mac_ports["a"].shape.elem_shape
        self.weight_shape = mac_ports["w"].shape.elem_shape
        self.result_shape = mac_ports["result"].shape
        self.act_side_layout = mac_side(mac, "a_side")  # not `act_side`: that is the port
        act = decoder.signature.members["group"].shape
        self.weight_layout = weight_layout(self.n, self.weight_shape, metadata_ports(decoder),
                                           mac_side(mac, "w_side"))
        ports = {
            "act": In(act), "weight": In(self.weight_layout), "valid": In(1), "last": In(1),
            "act_out": Out(act), "weight_out": Out(self.weight_layout), "valid_out": Out(1),
            "last_out": Out(1),
            "result": Out(self.result_shape), "result_valid": Out(1), "overflow": Out(1),
            "malformed": Out(1),
        }
        if "bad_groups" in decoder.signature.members:
            ports["bad_groups"] = Out(decoder.signature.members["bad_groups"].shape)
        if self.act_side_layout is not None:
            ports |= {"act_side": In(self.act_side_layout), "act_side_out": Out(self.act_side_layout)}
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = decoder = self.decoder
        m.submodules.mac = mac = self.mac

        m.d.comb += [self.act_out.eq(delay(m, self.act, 1, "act", reset_less=True)),
                     self.weight_out.eq(delay(m, self.weight, 1, "weight", reset_less=True))]
        m.d.sync += [self.valid_out.eq(self.valid), self.last_out.eq(self.valid & self.last)]
        m.d.comb += decoder.group.eq(self.act_out)
        for name in metadata_ports(decoder):
            m.d.comb += getattr(decoder, name).eq(getattr(self.weight_out, name))
        m.d.comb += self.malformed.eq(decoder.malformed & self.valid_out)
        if "bad_groups" in decoder.signature.members:
            m.d.comb += self.bad_groups.eq(Mux(self.valid_out, decoder.bad_groups, 0))

        m.d.comb += [
            mac.a.eq(delay(m, decoder.operands, 1, "operands", reset_less=True)),
            mac.w.eq(delay(m, self.weight_out.values, 1, "weights", reset_less=True)),
            mac.valid.eq(delay(m, self.valid_out, 1, "valid", reset_less=False)),
            mac.last.eq(delay(m, self.last_out, 1, "last", reset_less=False)),
            self.result.eq(mac.result), self.result_valid.eq(mac.result_valid),
            self.overflow.eq(mac.overflow),
        ]
        if self.act_side_layout is not None:
            m.d.comb += [self.act_side_out.eq(delay(m, self.act_side, 1, "act_side", reset_less=True)),
                         mac.a_side.eq(delay(m, self.act_side_out, 1, "a_side", reset_less=True))]
        if "w_side" in mac.signature.members:
            m.d.comb += mac.w_side.eq(delay(m, self.weight_out.side, 1, "w_side", reset_less=True))
        return m
