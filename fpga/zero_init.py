"""Drop the all-zero initializers of large memories from Verilog before synthesis.

Amaranth gives every `amaranth.lib.memory.Memory` an initial value (zero by default) and Yosys'
`write_verilog` spells it out one word per line (``mem[12] = 160'h0...;``).  The accelerator's
buffers are 13 000 such lines, and Yosys' Verilog frontend takes minutes per thousand of them
(the 8x8 accelerator: 13 min of a 32 min ECP5 run, 3 s without).  Block RAM, distributed RAM and
flip-flops of ECP5, iCE40 and Gowin devices all power up zero, so an all-zero initializer is the
device's own power-up state: removing it changes no bit of the placed design.

``strip_zero_memory_init(text)`` returns the text without every ``initial`` block that only
assigns zero to the words of one memory and has at least `MIN_WORDS` of them (small ones cost
nothing and are kept), and the number of blocks removed.
"""
from __future__ import annotations

import re

MIN_WORDS = 64

_ZERO_WORD = re.compile(r"\s*(\\?\S+)\[\d+\] = \d+'[hdb]0+;\s*$")


def strip_zero_memory_init(text: str) -> tuple[str, int]:
    """``(text without large all-zero memory initializers, how many were removed)``."""
    lines = text.split("\n")
    out: list[str] = []
    removed = 0
    i = 0
    while i < len(lines):
        if lines[i].strip() == "initial begin":
            j, names = i + 1, set()
            while j < len(lines):
                word = _ZERO_WORD.match(lines[j])
                if not word:
                    break
                names.add(word.group(1))
                j += 1
            words = j - i - 1
            if j < len(lines) and lines[j].strip() == "end" and len(names) == 1 and words >= MIN_WORDS:
                removed += 1
                i = j + 1
                continue
        out.append(lines[i])
        i += 1
    return "\n".join(out), removed
