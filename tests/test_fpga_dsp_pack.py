"""The MULT18X18D input-register packing pass, on real Yosys netlists placed by real nextpnr."""

from conftest import ecp5_fmax, ecp5_netlist
from nmforge.fpga.dsp_pack import pack_mult_registers

MULTIPLY = """
module mul8(input clk, input rst, input signed [7:0] a, input signed [7:0] b,
            output reg signed [15:0] p, output reg signed [7:0] a_seen);
  reg signed [7:0] a_r, b_r; reg signed [15:0] p_r;
  always @(posedge clk) begin
    {RESET}
    a_r <= a; b_r <= b; p_r <= a_r * b_r; p <= p_r; {SHARE}
  end
endmodule
"""


def synthesize(tmp_path, reset="", share=""):
    return ecp5_netlist(tmp_path, MULTIPLY.replace("{RESET}", reset).replace("{SHARE}", share), "mul8",
                        "-noflatten")


def cells_of(netlist, kind):
    return [c for c in netlist["modules"]["mul8"]["cells"].values() if c["type"] == kind]


def test_input_registers_move_into_the_multiplier(tmp_path):
    netlist = synthesize(tmp_path)
    ports = netlist["modules"]["mul8"]["ports"]
    flip_flops = len(cells_of(netlist, "TRELLIS_FF"))
    before = ecp5_fmax(tmp_path, netlist, "plain")
    stats = pack_mult_registers(netlist)
    assert stats == {"mult_blocks": 1, "input_registers": 2, "flip_flops_removed": 16}
    assert len(cells_of(netlist, "TRELLIS_FF")) == flip_flops - 16
    (mult,) = cells_of(netlist, "MULT18X18D")
    assert mult["parameters"]["REG_INPUTA_CLK"] == mult["parameters"]["REG_INPUTB_CLK"] == "CLK0"
    assert mult["connections"]["CLK0"] == ports["clk"]["bits"]
    # The block now registers the module inputs themselves (sign-extended to 18 bits).
    assert [mult["connections"][f"A{i}"][0] for i in range(8)] == ports["a"]["bits"]
    assert [mult["connections"][f"B{i}"][0] for i in range(8)] == ports["b"]["bits"]
    assert {mult["connections"][f"A{i}"][0] for i in range(8, 18)} == {ports["a"]["bits"][7]}
    after = ecp5_fmax(tmp_path, netlist, "packed")
    assert after > before * 1.15, f"packing should shorten the critical path: {before} -> {after} MHz"


def test_a_synchronous_reset_moves_into_the_block_reset(tmp_path):
    netlist = synthesize(tmp_path, reset="if (rst) begin a_r <= 0; b_r <= 0; end else")
    ports = netlist["modules"]["mul8"]["ports"]
    stats = pack_mult_registers(netlist)
    assert stats["input_registers"] == 2
    (mult,) = cells_of(netlist, "MULT18X18D")
    assert mult["parameters"]["RESETMODE"] == "SYNC"
    resets = {mult["connections"][pin][0] for pin in ("RST0", "RST1")}
    assert ports["rst"]["bits"][0] in resets  # Yosys may also build one reset from a LUT


def test_flip_flops_with_an_enable_stay_in_the_fabric(tmp_path):
    netlist = synthesize(tmp_path, reset="if (rst) ; else")  # rst low enables: a clock enable
    enabled = {name for name, cell in netlist["modules"]["mul8"]["cells"].items()
               if cell["type"] == "TRELLIS_FF" and cell["connections"].get("CE", ["1"]) != ["1"]}
    assert enabled, "the design should have flip-flops with a clock enable"
    pack_mult_registers(netlist)
    assert enabled <= set(netlist["modules"]["mul8"]["cells"])


def test_a_shared_flip_flop_is_duplicated_not_removed(tmp_path):
    netlist = synthesize(tmp_path, share="a_seen <= a_r;")
    stats = pack_mult_registers(netlist)
    assert stats["input_registers"] == 2
    assert stats["flip_flops_removed"] == 8  # b_r moves; a_r still drives a_seen
