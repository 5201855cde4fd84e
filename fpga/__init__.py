"""nmforge.fpga: FPGA synthesis / place-and-route flow (Yosys + nextpnr from PyPI's YoWASP packages)."""

from .devices import DEVICES, TARGETS
from .flow import FlowError, format_report, synthesize

__all__ = ["synthesize", "format_report", "FlowError", "TARGETS", "DEVICES"]
