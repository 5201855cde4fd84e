"""nmforge.fpga."""
