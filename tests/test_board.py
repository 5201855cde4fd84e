"""Board builds and the UART host link: the host driver against the simulated board logic
(cocotb on Verilator, sim/tb_board.py), a real ULX3S bitstream build, and the fit checks."""
import json
import re
import types

import pytest

from conftest import EXAMPLES, make_config
from nmforge.fpga.board import BOARDS, BoardFitError, build_board, check_fit, cmd_build, generate_link
from nmforge.fpga.host import HostLink, LinkError
from nmforge.gen.config import load_config, parse_config
from nmforge.rtl.host_link import INFO_LEN, ident_bytes
from nmforge.rtl.uart import divisor_for
from nmforge.sim.runner import run_testbench

DIVISOR = 8            # cycles per bit in simulation
TIMEOUT_CYCLES = 2000  # command timeout in simulation (25 byte times)


def _board_sim(tmp_path, config, seed=1, testbench="nmforge.sim.tb_board", **env):
    verilog, module = generate_link(config, tmp_path, DIVISOR, TIMEOUT_CYCLES)
    full_env = {"NMFORGE_MANIFEST": str((tmp_path / "manifest.json").resolve()),
                "NMFORGE_DIVISOR": str(DIVISOR), "NMFORGE_TIMEOUT_CYCLES": str(TIMEOUT_CYCLES),
                "NMFORGE_RESULT_JSON": str(tmp_path / "result.json")}
    full_env.update(env)
    return run_testbench(verilog.resolve(), module, testbench, tmp_path.resolve(), full_env,
                         seed, log=lambda line: None, cxx_opt="-Os")  # long simulations: optimise


def test_host_link_gemms_on_simulated_board(tmp_path):
    """2x2 2:4 INT8 array with a 16-bit accumulator (so the extreme GEMM overflows): the HostLink
    computes GEMMs (2x8x2, 4x16x4, a padded 3x12x3 and a random one) bit-exactly through the UART,
    reads the flags, and exercises the protocol's busy/empty/error/timeout paths."""
    config = make_config("brd", rows=2, cols=2, nm="2:4", acc_width=16)
    result = _board_sim(tmp_path, config, seed=5)
    assert result.passed, f"board simulation failed; log {result.log}, waves {result.waves}"
    assert result.tests == 2
    runs = json.loads((tmp_path / "result.json").read_text())
    assert [r["shape"] for r in runs["runs"]][:3] == [[2, 8, 2], [4, 16, 4], [3, 12, 3]]
    assert any(r["overflowed"] for r in runs["runs"]), "no GEMM overflowed: the flag went untested"
    assert runs["stats"]["busy"] == 0


def test_host_link_dense_saturating(tmp_path):
    """A dense (2:2), saturating 1x3 array with odd widths: payload byte counts that are not
    multiples of 8 bits, and no index metadata."""
    config = make_config("brd_dense", rows=1, cols=3, nm="2:2", act_width=5, weight_width=7,
                         acc_width=13, overflow="saturate")
    result = _board_sim(tmp_path, config, seed=2, NMFORGE_SHAPES="2x6x3,1x4x5")
    assert result.passed, f"board simulation failed; log {result.log}, waves {result.waves}"


@pytest.mark.parametrize("dataflow", ["output_stationary", "dot_product", "weight_stationary"])
def test_accelerator_gemms_on_simulated_board(tmp_path, dataflow):
    """`nmforge build --board` of a config with [accelerator] builds the accelerator behind the
    UART link: simulated (sim.tb_board_accel), the AcceleratorLink host driver loads A, W and
    PARAM, runs GEMMs larger than the 2x2 2:4 array (output-stationary: 5x12x5 raw
    accumulators, 6x16x4 requantized with ReLU; K in whole 8-element ACT words on the
    dot-product and weight-stationary arrays) and reads the results back bit-exactly; a refused
    command reports its error code, CLEAR resets it, and the next GEMM is exact. The host driver
    is the same for every dataflow."""
    config = parse_config({
        "name": f"brd_acc_{dataflow[:3]}", "array": {"rows": 2, "cols": 2, "dataflow": dataflow},
        "sparsity": {"nm": "2:4"},
        "pe": {"kind": "int", "act_width": 8, "weight_width": 8, "acc_width": 32, "overflow": "wrap"},
        "accelerator": {"stream_width": 32, "act_depth": 64, "weight_depth": 64, "param_depth": 16,
                        "out_depth": 64}}, source="test")
    result = _board_sim(tmp_path, config, seed=3, testbench="nmforge.sim.tb_board_accel")
    assert result.passed, f"board simulation failed; log {result.log}, waves {result.waves}"
    assert result.tests == 1
    runs = json.loads((tmp_path / "result.json").read_text())
    k_group = 4 if dataflow == "output_stationary" else 8   # rows * M
    assert runs["runs"] == [[5 if k_group == 4 else 3, 3 * k_group, 5],
                            [6 if k_group == 4 else 3, 4 * k_group, 4]]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["accelerator"]["shape"]["stream_width"] == 32


def test_ulx3s_bitstream(tmp_path):
    """`nmforge build examples/nm24_int8_4x4.toml --board ulx3s`: Yosys + nextpnr-ecp5 + ecppack."""
    config = load_config(EXAMPLES / "nm24_int8_4x4.toml")
    lines = []
    bitstream = build_board(config, "ulx3s", tmp_path, log=lines.append)
    assert bitstream == (tmp_path / "board-ulx3s" / "nm24_int8_4x4_ulx3s.bit").resolve()
    assert bitstream.stat().st_size > 100_000
    report = json.loads((bitstream.parent / "report.json").read_text())
    assert report["resources"]["DSP"]["used"] == 32
    assert report["timing_met"] and report["fmax_mhz"] > 25
    assert report["uart"] == {"baud": 115200, "divisor": 217, "actual_baud": 115207.4}
    assert (tmp_path / "manifest.json").is_file()
    assert lines[-1].startswith("[board] ") and "timing met" in lines[-1]


def test_icebreaker_bitstream(tmp_path):
    """`nmforge build examples/nm24_int8_2x2.toml --board icebreaker`: Yosys + nextpnr-ice40 + icepack;
    the 8 multipliers fill the UP5K's 8 SB_MAC16 (tests/test_fpga_gate_level.py simulates that
    mapping at gate level)."""
    config = load_config(EXAMPLES / "nm24_int8_2x2.toml")
    bitstream = build_board(config, "icebreaker", tmp_path, log=lambda line: None)
    assert bitstream == (tmp_path / "board-icebreaker" / "nm24_int8_2x2_icebreaker.bin").resolve()
    assert bitstream.stat().st_size > 50_000
    report = json.loads((bitstream.parent / "report.json").read_text())
    assert report["resources"]["DSP"] == {"used": 8, "available": 8}
    assert report["timing_met"] and report["fmax_mhz"] > 12
    assert report["uart"]["divisor"] == 104


def test_icebreaker_rejects_4x4(tmp_path, capsys):
    config = load_config(EXAMPLES / "nm24_int8_4x4.toml")
    with pytest.raises(BoardFitError, match=r"needs 32 multipliers, the iCE40UP5K has 8 DSP blocks \(SB_MAC16\)"):
        check_fit(config, "icebreaker")
    check_fit(make_config(rows=2, cols=2, nm="2:4"), "icebreaker")
    check_fit(config, "ulx3s")
    args = types.SimpleNamespace(board="icebreaker")
    assert cmd_build(config, tmp_path, args) == 2
    err = capsys.readouterr().err
    assert err.startswith("nmforge: error: ") and err.count("\n") == 1
    assert not any(tmp_path.iterdir()), "a rejected build wrote files"
    assert BOARDS == ("ulx3s", "icebreaker")


def int_accelerator_table(name, size, nm, depth):
    """The config table of a size x size INT8 accelerator with 32-bit streams and `depth`-word
    ACT, WEIGHT and OUT buffers."""
    return {"name": name, "array": {"rows": size, "cols": size, "dataflow": "output_stationary"},
            "sparsity": {"nm": nm},
            "pe": {"kind": "int", "act_width": 8, "weight_width": 8, "acc_width": 32,
                   "overflow": "wrap"},
            "accelerator": {"stream_width": 32, "act_depth": depth, "weight_depth": depth,
                            "param_depth": 16, "out_depth": depth}}


def test_icebreaker_counts_the_output_stages_multipliers():
    """A 2x2 2:4 accelerator: the array's 8 multipliers fill the UP5K, its two output stages
    need 4 more; a 2x2 1:4 one (4 + 4) fits."""
    table = int_accelerator_table("a", 2, "2:4", 64)
    with pytest.raises(BoardFitError, match=r"needs 12 multipliers \(8 in the array, 4 in the "
                                            r"output stages\), the iCE40UP5K has 8 DSP blocks"):
        check_fit(parse_config(table, source="test"), "icebreaker")
    check_fit(parse_config({**table, "sparsity": {"nm": "1:4"}}, source="test"), "icebreaker")


def test_icebreaker_names_what_nextpnr_found_too_small(tmp_path, capsys):
    """A design past the multiplier check that nextpnr cannot place: one line naming the
    resources from its utilisation table (its buffers need 80 block RAMs of the UP5K's 30),
    exit status 2."""
    config = parse_config(int_accelerator_table("big", 1, "1:4", 4096), source="test")
    check_fit(config, "icebreaker")
    assert cmd_build(config, tmp_path, types.SimpleNamespace(board="icebreaker")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.match(r"nmforge: error: big_icebreaker does not fit the iCE40UP5K: it needs .*"
                    r"80 ICESTORM_RAM where the iCE40UP5K has 30 \[log: ", err), err


def test_uart_divisor():
    assert divisor_for(25e6, 115200) == 217
    assert divisor_for(12e6, 115200) == 104
    with pytest.raises(ValueError, match="too fast"):
        divisor_for(12e6, 6_000_000)
    with pytest.raises(ValueError, match="off by"):
        divisor_for(12e6, 2_600_000)  # 4.6 cycles per bit: 5 is 7.7% slow


class _Loopback:
    """A port whose device answers from a script (for host-side error handling)."""

    def __init__(self, answers):
        self.answers, self.written = bytearray(answers), bytearray()

    def write(self, data):
        self.written += data

    def read(self, n):
        out, self.answers = bytes(self.answers[:n]), self.answers[n:]
        return out


def test_host_driver_errors(tmp_path):
    from nmforge.gen.generate import generate
    info = generate(make_config("hd", rows=2, cols=2), tmp_path).info
    ident = ident_bytes(info["parameters"], info["config_hash"], 2 * 4 * 8 + 1, 2 * (2 * 8 + 2 * 2), 4 * 32)
    assert len(ident) == INFO_LEN
    link = HostLink(_Loopback(b"\x06" + ident), info)
    assert (link.act_len, link.weight_len, link.result_len) == (9, 5, 16)
    link.port = _Loopback(b"\x06" + ident)
    assert link.info() == {"version": 1, "rows": 2, "cols": 2, "n": 2, "m": 4, "dense": False,
                           "act_bytes": 9, "weight_bytes": 5, "result_bytes": 16,
                           "config_hash": info["config_hash"][:8]}
    with pytest.raises(LinkError, match="wrong bitstream"):
        HostLink(_Loopback(b"\x06" + bytes(INFO_LEN)), info)
    link.port = _Loopback(b"")
    with pytest.raises(LinkError, match="timeout: got 0 of 1 expected bytes of the response to opcode 0x04"):
        link.status()
    link.port = _Loopback(b"\x01")
    with pytest.raises(LinkError, match="out of step"):
        link.status()
    link.port = _Loopback(b"\xff")
    with pytest.raises(LinkError, match="does not know"):
        link.nop()
    link.port = _Loopback(b"\x81" * 3)
    link.retries = 3
    with pytest.raises(LinkError, match="act holding register stayed full"):
        link.send_act(0)
    assert bytes(link.port.written) == bytes([1] + [0] * 9) * 3


def test_accelerator_link_checks_commands_on_the_host(tmp_path):
    """AcceleratorLink refuses (ValueError naming the error code, nothing sent) a command the
    accelerator would refuse, and a bare array's manifest."""
    from nmforge.fpga.host import AcceleratorLink, open_link
    from nmforge.gen.generate import generate
    from nmforge.rtl import isa
    config = parse_config({
        "name": "hd_acc", "array": {"rows": 2, "cols": 2, "dataflow": "output_stationary"},
        "sparsity": {"nm": "2:4"},
        "pe": {"kind": "int", "act_width": 8, "weight_width": 8, "acc_width": 32, "overflow": "wrap"},
        "accelerator": {"stream_width": 32, "act_depth": 16, "weight_depth": 16, "param_depth": 8,
                        "out_depth": 16}}, source="test")
    info = generate(config, tmp_path / "acc").info
    link = open_link(_Loopback(b""), info, check_info=False)
    assert isinstance(link, AcceleratorLink)
    assert (link.command_len, link.data_len, link.read_len) == (16, 4, 5)
    with pytest.raises(ValueError, match="would be refused: ACT_RANGE"):
        link.load(isa.Buffer.ACT, 10, [0] * 7)
    with pytest.raises(ValueError, match="would be refused: OUT_RANGE"):
        link.read(0, 17)
    assert bytes(link.port.written) == b""
    array_info = generate(make_config("hd_arr", rows=2, cols=2), tmp_path / "arr").info
    with pytest.raises(ValueError, match="no accelerator section"):
        AcceleratorLink(_Loopback(b""), array_info, check_info=False)
    assert isinstance(open_link(_Loopback(b""), array_info, check_info=False), HostLink)
