"""AXI4-Stream ports of a DUT (`<name>__tdata/__tvalid/__tready/__tlast`, rtl.axis) seen through
the valid/ready/payload names the sim.streams drivers use; the payload is tdata with tlast as
the bit above it (`width` bits up)."""


class _Joined:
    """tdata and tlast as one value: tdata | tlast << width."""

    def __init__(self, tdata, tlast, width):
        self.tdata, self.tlast, self.width = tdata, tlast, width

    @property
    def value(self):
        return int(self.tdata.value) | int(self.tlast.value) << self.width

    @value.setter
    def value(self, bits):
        self.tdata.value = bits & ((1 << self.width) - 1)
        self.tlast.value = (bits >> self.width) & 1


class AxisPort:
    """Pass as the `dut` of sim.streams.StreamSource/StreamSink/StreamMonitor with `name`."""

    def __init__(self, dut, name, width):
        self.width = width
        setattr(self, f"{name}__valid", getattr(dut, f"{name}__tvalid"))
        setattr(self, f"{name}__ready", getattr(dut, f"{name}__tready"))
        setattr(self, f"{name}__payload",
                _Joined(getattr(dut, f"{name}__tdata"), getattr(dut, f"{name}__tlast"), width))

    def beat(self, tdata, tlast=False):
        """The payload value of one beat."""
        return tdata | int(tlast) << self.width
