"""The MULT18X18D register packing pass, on real Yosys netlists placed by real nextpnr."""

from conftest import ecp5_fmax, ecp5_netlist
from nmforge.fpga.dsp_pack import pack_mult_registers

MULTIPLY = """
module mul8(input clk, input rst, input signed [7:0] a, input signed [7:0] b,
            output reg signed [15:0] p, output reg signed [7:0] a_seen);
  reg signed [7:0] a_r, b_r; reg signed [15:0] p_r; wire signed [15:0] product = a_r * b_r{MORE};
  always @(posedge clk) begin
    {RESET}
    begin a_r <= a; b_r <= b; p_r <= product; end
    p <= p_r; {SHARE}
  end
endmodule
"""


def synthesize(tmp_path, reset="", share="", more=""):
    """`reset` prefixes the statement that loads a_r, b_r and p_r."""
    verilog = MULTIPLY.replace("{RESET}", reset).replace("{SHARE}", share).replace("{MORE}", more)
    return ecp5_netlist(tmp_path, verilog, "mul8", "-noflatten")


def cells_of(netlist, kind):
    return [c for c in netlist["modules"]["mul8"]["cells"].values() if c["type"] == kind]


def test_input_and_output_registers_move_into_the_multiplier(tmp_path):
    netlist = synthesize(tmp_path)
    ports = netlist["modules"]["mul8"]["ports"]
    flip_flops = len(cells_of(netlist, "TRELLIS_FF"))
    before = ecp5_fmax(tmp_path, netlist, "plain")
    stats = pack_mult_registers(netlist)
    assert stats == {"mult_blocks": 1, "input_registers": 2, "output_registers": 1, "flip_flops_removed": 32}
    assert len(cells_of(netlist, "TRELLIS_FF")) == flip_flops - 32  # a_r, b_r and p_r
    (mult,) = cells_of(netlist, "MULT18X18D")
    params = mult["parameters"]
    assert params["REG_INPUTA_CLK"] == params["REG_INPUTB_CLK"] == params["REG_OUTPUT_CLK"] == "CLK0"
    assert mult["connections"]["CLK0"] == ports["clk"]["bits"]
    # The block now registers the module inputs themselves (sign-extended to 18 bits).
    assert [mult["connections"][f"A{i}"][0] for i in range(8)] == ports["a"]["bits"]
    assert [mult["connections"][f"B{i}"][0] for i in range(8)] == ports["b"]["bits"]
    assert {mult["connections"][f"A{i}"][0] for i in range(8, 18)} == {ports["a"]["bits"][7]}
    # ... and its registered product drives p's flip-flops directly, bit for bit.
    p_inputs = {c["connections"]["Q"][0]: c["connections"]["DI"][0] for c in cells_of(netlist, "TRELLIS_FF")}
    assert [p_inputs[bit] for bit in ports["p"]["bits"]] == [mult["connections"][f"P{i}"][0] for i in range(16)]
    after = ecp5_fmax(tmp_path, netlist, "packed")
    assert after > before * 1.15, f"packing should shorten the critical path: {before} -> {after} MHz"


def test_a_product_that_feeds_logic_keeps_its_register_in_the_fabric(tmp_path):
    netlist = synthesize(tmp_path, more=" + a_r")  # an adder between the block and p_r
    stats = pack_mult_registers(netlist)
    assert stats["input_registers"] == 2 and stats["output_registers"] == 0
    (mult,) = cells_of(netlist, "MULT18X18D")
    assert mult["parameters"].get("REG_OUTPUT_CLK", "NONE") == "NONE"


def test_a_product_with_two_loads_keeps_its_register_in_the_fabric(tmp_path):
    netlist = synthesize(tmp_path, share="if (a[0]) a_seen <= product[15:8];")  # a second register
    stats = pack_mult_registers(netlist)
    assert stats["output_registers"] == 0


def test_a_synchronous_reset_moves_into_the_block_reset(tmp_path):
    netlist = synthesize(tmp_path, reset="if (rst) begin a_r <= 0; b_r <= 0; p_r <= 0; end else")
    ports = netlist["modules"]["mul8"]["ports"]
    stats = pack_mult_registers(netlist)
    assert stats["input_registers"] == 2 and stats["output_registers"] == 1
    (mult,) = cells_of(netlist, "MULT18X18D")
    assert mult["parameters"]["RESETMODE"] == "SYNC"
    resets = {mult["connections"][pin][0] for pin in ("RST0", "RST1", "RST2")}
    assert ports["rst"]["bits"][0] in resets  # Yosys may also build one reset from a LUT
    assert mult["connections"]["RST2"] != ["0"]


def test_flip_flops_with_an_enable_stay_in_the_fabric(tmp_path):
    netlist = synthesize(tmp_path, reset="if (rst) ; else")  # rst low enables: a clock enable
    enabled = {name for name, cell in netlist["modules"]["mul8"]["cells"].items()
               if cell["type"] == "TRELLIS_FF" and cell["connections"].get("CE", ["1"]) != ["1"]}
    assert enabled, "the design should have flip-flops with a clock enable"
    stats = pack_mult_registers(netlist)
    assert stats["input_registers"] == stats["output_registers"] == 0
    assert enabled <= set(netlist["modules"]["mul8"]["cells"])


def test_a_shared_flip_flop_is_duplicated_not_removed(tmp_path):
    netlist = synthesize(tmp_path, share="a_seen <= a_r;")
    stats = pack_mult_registers(netlist)
    assert stats["input_registers"] == 2
    assert stats["flip_flops_removed"] == 8 + 16  # b_r and p_r move; a_r still drives a_seen
