"""nmforge.fpga: FPGA synthesis / place-and-route flow (Yosys + nextpnr from PyPI's YoWASP packages)."""

from .devices import DEVICES, FAMILIES, TARGETS, device, device_names, resolve_device
from .flow import FlowError, format_report, synthesize, uses_harness
from .harness import harness_verilog, ports_from_verilog

__all__ = ["synthesize", "format_report", "FlowError", "TARGETS", "DEVICES", "FAMILIES", "device",
           "device_names", "resolve_device", "harness_verilog", "ports_from_verilog", "uses_harness"]
