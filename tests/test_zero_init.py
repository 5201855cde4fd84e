"""fpga.zero_init: the all-zero memory initializers that Yosys' Verilog frontend is slow on are
dropped before synthesis; anything else is kept."""
from nmforge.fpga.zero_init import MIN_WORDS, strip_zero_memory_init
from nmforge.gen.elaborate import build, to_verilog

from test_accel import accel_config


def _memory(name, words, value=0):
    body = "".join(f"    {name}[{i}] = 8'h{value if i == 3 else 0:02x};\n" for i in range(words))
    return f"  reg [7:0] {name} [{words - 1}:0];\n  initial begin\n{body}  end\n"


def test_strips_large_all_zero_initializers_only():
    text = ("module m;\n" + _memory("big", MIN_WORDS) + _memory("small", MIN_WORDS - 1)
            + _memory("data", MIN_WORDS, value=5) + "endmodule\n")
    out, removed = strip_zero_memory_init(text)
    assert removed == 1
    assert "big[0] =" not in out and "reg [7:0] big [63:0];" in out
    assert "small[0] = 8'h00;" in out and "data[3] = 8'h05;" in out
    assert out.count("initial begin") == 2


def test_accelerator_buffers():
    """The accelerator's buffers (ACT, WEIGHT, and the OUT and PARAM buffers' banks) lose their
    initializers; the array's small FIFOs keep theirs."""
    config = accel_config(act_depth=64, weight_depth=64, param_depth=128, out_depth=256)
    text = to_verilog(build(config, "accelerator"), config.name)
    out, removed = strip_zero_memory_init(text)
    assert removed == 2 + 4 + 2  # act, weight; 4 OUT banks; 2 PARAM banks (of >= MIN_WORDS words)
    for buffer in ("act_mem", "slice0", "bank0", "bank1", "bank2", "bank3"):   # slice0: WEIGHT
        assert f"{buffer}[0] =" in text and f"{buffer}[0] =" not in out
    assert "initial begin" in out  # the array's FIFOs
    assert len(text.splitlines()) - len(out.splitlines()) == (2 + 4 + 2) * (64 + 2)
