"""``python -m nmforge.fpga design.v TOP {ecp5,ice40} OUT_DIR [--clock-mhz F]``: run the FPGA flow."""

import sys

from .flow import main

sys.exit(main())
