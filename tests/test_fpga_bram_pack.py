"""The DP16KD output-register packing pass, on real Yosys netlists placed by real nextpnr."""

from conftest import ecp5_fmax, ecp5_netlist
from nmforge.fpga.bram_pack import pack_bram_output_registers

# A 512 x 36 memory read into `data` (the block RAM's own read register), then into `q`
# ({RESET}, {LOGIC} vary it) and `r`, which is summed into `total` ({SUM} sums `q` instead). `no_rw_check` as on the accelerator's buffers
# (rtl.banked_memory.BUFFER_ATTRS): no read-during-write bypass multiplexer behind the block.
MEMORY = """
module ram(input clk, input rst, input we, input [8:0] wa, input [8:0] ra, input [35:0] wd,
           output reg [35:0] total, output reg [35:0] seen);
  (* no_rw_check *) reg [35:0] mem [0:511];
  reg [35:0] data, q, r;
  always @(posedge clk) begin
    if (we) mem[wa] <= wd;
    data <= mem[ra];
    {RESET} q <= data{LOGIC};
    r <= q;
    total <= total + {SUM}; {SHARE}
  end
endmodule
"""


def synthesize(tmp_path, reset="", logic="", share="", sum_of="r"):
    text = (MEMORY.replace("{RESET}", reset).replace("{LOGIC}", logic).replace("{SHARE}", share)
            .replace("{SUM}", sum_of))
    return ecp5_netlist(tmp_path, text, "ram")


def cells_of(netlist, kind):
    return [c for c in netlist["modules"]["ram"]["cells"].values() if c["type"] == kind]


def test_the_read_register_moves_into_the_block_ram(tmp_path):
    netlist = synthesize(tmp_path)
    (bram,) = cells_of(netlist, "DP16KD")
    assert bram["parameters"]["REGMODE_B"] == "NOREG"
    flip_flops = len(cells_of(netlist, "TRELLIS_FF"))
    before = ecp5_fmax(tmp_path, netlist, "plain")
    stats = pack_bram_output_registers(netlist)
    assert stats == {"bram_read_ports": 1, "output_registers": 1, "flip_flops_removed": 36}
    assert len(cells_of(netlist, "TRELLIS_FF")) == flip_flops - 36
    (bram,) = cells_of(netlist, "DP16KD")
    # 36 bits wide: pseudo-dual-port, the read data on both halves' pins
    assert bram["parameters"]["REGMODE_A"] == bram["parameters"]["REGMODE_B"] == "OUTREG"
    assert bram["connections"]["OCEA"] == bram["connections"]["OCEB"] == ["1"]
    after = ecp5_fmax(tmp_path, netlist, "packed")
    assert after > before * 1.3, f"packing should shorten the critical path: {before} -> {after} MHz"


def test_a_synchronous_reset_becomes_the_output_register_reset(tmp_path):
    netlist = synthesize(tmp_path, reset="if (rst) q <= 0; else")
    stats = pack_bram_output_registers(netlist)
    assert stats["output_registers"] == 1
    (bram,) = cells_of(netlist, "DP16KD")
    assert bram["parameters"]["RESETMODE"] == "SYNC"
    assert bram["connections"]["RSTB"] != ["0"] and bram["connections"]["RSTA"] == bram["connections"]["RSTB"]


def test_logic_between_the_block_and_the_register_keeps_it_in_the_fabric(tmp_path):
    netlist = synthesize(tmp_path, logic=" ^ {18'h0, data[35:18]}")
    flip_flops = len(cells_of(netlist, "TRELLIS_FF"))
    assert pack_bram_output_registers(netlist)["output_registers"] == 0
    assert len(cells_of(netlist, "TRELLIS_FF")) == flip_flops
    (bram,) = cells_of(netlist, "DP16KD")
    assert bram["parameters"]["REGMODE_B"] == "NOREG"


def test_read_data_with_another_load_keeps_its_register(tmp_path):
    netlist = synthesize(tmp_path, share="seen <= ~data;")
    assert pack_bram_output_registers(netlist)["output_registers"] == 0


def test_a_read_register_feeding_logic_stays_in_the_fabric(tmp_path):
    assert pack_bram_output_registers(synthesize(tmp_path, sum_of="q"))["output_registers"] == 1  # an adder
    netlist = synthesize(tmp_path, sum_of="(q[0] ? q : r)")
    assert pack_bram_output_registers(netlist)["output_registers"] == 0
