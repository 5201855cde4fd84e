"""Mutation testing (`nmforge mutate`, sim/mutate.py) and the testbench watchdog.

The simulations are real: Verilator through cocotb, the mutants made by Yosys' `mutate`."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from nmforge.gen.elaborate import build, to_verilog
from nmforge.gen.generate import generate
from nmforge.sim.harness import watchdog_bound
from nmforge.sim.mutate import (BOUNDED_EXTRA, KINDS, SRC_FILE, _prep, _yosys, classify, draw, location,
                                 format_table, prove_equivalent, run_mutate)
from nmforge.sim.regression import run_regression

from conftest import make_config


def wrapped_verilog(text: str, info: dict, port: str, logic: list[str]) -> str:
    """The design wrapped so that output `port` is what the Verilog lines `logic` assign to it
    from `inner_<port>`, the design's own value (everything else untouched)."""
    module = info["module"]
    inner = text.replace(f"module {module}(", f"module {module}_inner(", 1)
    assert inner != text
    ports = info["ports"]
    lines = [f"module {module}({', '.join(p['name'] for p in ports)});"]
    for p in ports:
        lines.append(f"  {p['direction']} [{p['width'] - 1}:0] {p['name']};")
    width = next(p["width"] for p in ports if p["name"] == port)
    lines.append(f"  wire [{width - 1}:0] inner_{port};")
    connections = [f".{p['name']}({'inner_' + port if p['name'] == port else p['name']})" for p in ports]
    lines += [f"  {module}_inner inner({', '.join(connections)});", *logic, "endmodule"]
    return inner + "\n" + "\n".join(lines) + "\n"


def stuck_valid_verilog(text: str, info: dict) -> str:
    """The design wrapped so that `result__valid` never rises."""
    return wrapped_verilog(text, info, "result__valid", ["  assign result__valid = 1'b0;"])


def test_watchdog_fails_a_design_whose_output_never_becomes_valid(tmp_path):
    config = make_config("stuck", rows=2, cols=2)
    generated = generate(config, tmp_path / "design")
    stuck = tmp_path / "stuck.v"
    stuck.write_text(stuck_valid_verilog(generated.verilog.read_text(), generated.info))
    latency = generated.info["latency_cycles"]
    for corners, waited_for in ((0, "GEMM 0's"), (1, "the overflow tile")):
        started = time.monotonic()
        result = run_regression(stuck, generated.manifest, tmp_path / "run", 1,
                                options={"gemms": 2, "stall": 0.3, "corners": corners},
                                log=lambda line: None, waves_on_failure=False)
        assert not result.passed
        log = result.log.read_text()
        match = re.search(r"watchdog: stream 'result' stalled: no beat for (\d+) cycles at cycle (\d+)", log)
        assert match, log[-2000:]
        assert waited_for in log[match.start():match.start() + 400]
        bound, stalled_at = int(match.group(1)), int(match.group(2))
        # the longest tile a random GEMM draws has 7 beats per K-group window: the bound follows
        assert bound <= watchdog_bound(latency, 8, 0.3)
        if not corners:
            assert stalled_at <= 4 + 2 * bound  # reset, the first tile's beats, then the bound
        assert time.monotonic() - started < 120


def failing_log_with_counter(tmp_path, name, logic):
    """The regression's log on a 2x2 design whose `bad_groups` output is what the Verilog lines
    `logic` make of the design's own count (`inner_bad_groups`); the run must fail."""
    generated = generate(make_config(name, rows=2, cols=2, acc_width=20), tmp_path / "design")
    faulty = tmp_path / f"{name}.v"
    faulty.write_text(wrapped_verilog(generated.verilog.read_text(), generated.info, "bad_groups",
                                      logic))
    result = run_regression(faulty, generated.manifest, tmp_path / "run", 1,
                            options={"gemms": 2, "stall": 0.3}, log=lambda line: None,
                            waves_on_failure=False)
    assert not result.passed
    return result.log.read_text()


def test_a_bad_group_counter_that_steps_wrong_and_back_fails(tmp_path):
    """`bad_groups` with bit 14 inverted for the cycle after each update, a fault an end count
    cannot see (the counter is right again when it is read): the regression watches every
    change of the counter and fails naming the step."""
    log = failing_log_with_counter(tmp_path, "flipcount", [
        "  reg [31:0] seen = 0;", "  reg flip = 0;",
        "  always @(posedge clk) begin seen <= inner_bad_groups; flip <= inner_bad_groups != seen; end",
        "  assign bad_groups = inner_bad_groups ^ {17'b0, flip, 14'b0};"])
    assert re.search(r"bad_groups stepped \(cycle, from, to\) \[\(\d+, \d+, 163\d\d\)", log), log[-2000:]


def test_a_bad_group_counter_that_wraps_early_fails(tmp_path):
    """`bad_groups` cut to 12 bits: the few hundred bad groups a run's GEMMs inject fit, but the
    count-up corner (sim.corners.count_bad_groups_up: 2^15 all-malformed beats) does not."""
    log = failing_log_with_counter(tmp_path, "narrowcount",
                                   ["  assign bad_groups = {20'b0, inner_bad_groups[11:0]};"])
    assert re.search(r"bad_groups \d+ after 32768 beats of 2 malformed groups each \(want 65536",
                     log), log[-2000:]


def test_overflow_of_each_pe_alone_raises_the_flag(simulate):
    """The regression's per-PE overflow sweep (sim.corners.overflow_each_pe, on in `nmforge sim`)
    on every PE of a 2 x 3 array whose 20-bit accumulator overflows after 16 beats."""
    config = make_config("sweep23", rows=2, cols=3, acc_width=20)
    result, _ = simulate(config, "array", seed=3, sweep_beats=1 << 20)
    assert result.passed, f"simulation failed; log {result.log}"
    assert "overflow of each PE alone: 6 of 6 PEs, 16 beats each" in result.log.read_text()


def test_classify_and_draw_spread_over_kinds():
    pool = [
        r"mutate -mode inv -module t -cell $flatten\pe_0_0.\decoder.$eq$1 -port A -portbit 0 -src /x/rtl/decoder.py:97",
        r"mutate -mode inv -module t -cell $flatten\pe_0_0.\mac.$add$2 -port A -portbit 0 -src /x/rtl/accumulator.py:14",
        r"mutate -mode inv -module t -cell $flatten\pe_0_0.\mac.$mul$3 -port A -portbit 0 -src /x/rtl/mac_int.py:80",
        r"mutate -mode const0 -module t -cell $flatten\result_queue_0_0.$auto$memory_map.cc:97:x$4 -port A -portbit 0",
        r"mutate -mode const1 -module t -cell $flatten\pe_0_0.\mac.$mul$5 -port A -portbit 1 -src /x/rtl/mac_int.py:81",
    ]
    assert [classify(line) for line in pool] == ["decoder", "accumulator", "mac", "output queue", "mac"]
    drawn = draw(pool, 4, seed=3)
    assert {m["kind"] for m in drawn} == {"decoder", "accumulator", "mac", "output queue"}
    assert [m["id"] for m in drawn] == [1, 2, 3, 4]
    assert drawn[0]["location"].endswith("rtl/decoder.py:97")


def test_a_library_location_is_shown_from_its_package():
    line = (r"mutate -mode const1 -module t -cell $flatten\result_slot_1_1.\queue.$reduce_or$1 -port Y "
            r"-src /work/x/.venv/lib/python3.11/site-packages/amaranth/lib/fifo.py:154")
    assert location(line) == "amaranth/lib/fifo.py:154"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mutate_campaign_local_resumed_and_on_an_external_scheduler(tmp_path):
    """5 mutants of a 2x2 array: every kind among the first five, each killed by the default
    regression; a re-run is all cached; the same campaign on a `dask scheduler` + `dask worker`
    started here gives the same outcomes. Seed 3 draws no survivor: a survivor goes to the
    equivalence proofs, whose bounded miter on this array runs for minutes (seed 1's mutant 2, a
    multiplier's output-register enable stuck at 1, is unobservable but takes 240 s to give up on),
    which would make this test most of the suite's time."""
    config = make_config("mut22", rows=2, cols=2, acc_width=20)  # short overflow corners
    out = tmp_path / "out"
    local = run_mutate(config, out, count=5, seed=3, workers=1, log=lambda line: None)
    assert local["mutants"] == 5 and local["executor"].startswith("LocalCluster")
    assert set(local["by_kind"]) == set(KINDS[:5])
    assert local["killed"] == 5, local["mutants_detail"]
    assert json.loads((out / "mutation.json").read_text())["score"] == local["score"]
    assert "score:" in format_table(local)
    again = run_mutate(config, out, count=5, seed=3, log=lambda line: None)
    assert again["executor"] == "none (all cached)"
    outcomes = {m["id"]: m["outcome"] for m in local["mutants_detail"]}
    assert {m["id"]: m["outcome"] for m in again["mutants_detail"]} == outcomes

    shutil.rmtree(out / "mutants")  # keep the Verilator build, forget the outcomes
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    bin_dir = os.path.dirname(sys.executable)
    scheduler = subprocess.Popen([os.path.join(bin_dir, "dask"), "scheduler", "--host", "127.0.0.1",
                                  "--port", str(port), "--dashboard-address", ":0"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    worker = subprocess.Popen([os.path.join(bin_dir, "dask"), "worker", address, "--nworkers", "1",
                               "--nthreads", "1", "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        external = run_mutate(config, out, count=5, seed=3, scheduler=address, log=lambda line: None)
    finally:
        worker.terminate()
        scheduler.terminate()
        worker.wait(30)
        scheduler.wait(30)
    assert external["executor"] == f"scheduler {address}"
    assert {m["id"]: m["outcome"] for m in external["mutants_detail"]} == outcomes


def test_cli_mutate_rejects_a_bad_count(tmp_path, capsys):
    from nmforge.cli import main
    config = tmp_path / "c.toml"
    config.write_text(open(os.path.join(os.path.dirname(__file__), "..", "examples",
                                        "nm24_int8_2x2.toml")).read())
    assert main(["mutate", str(config), "--count", "0", "-o", str(tmp_path / "o")]) == 2
    assert "--count" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_equivalence_proof_of_an_unread_bit_and_none_for_an_observable_fault(tmp_path):
    """prove_equivalent on a 2x2 array. An output-queue FIFO computes `level - 1` one bit wider
    than `level`: inverting that top bit changes nothing stored, which equiv_induct proves once
    the differing bit itself is left out of the pairing (it alone stays unproven otherwise);
    inverting bit 0 makes the queue's level wrong, and no proof may pass."""
    config = make_config("prove22", rows=2, cols=2, acc_width=20)
    design = tmp_path / "design"
    info = generate(config, design).info
    module = info["module"]
    (design / SRC_FILE).write_text(to_verilog(build(config, "array"), module, emit_src=True))
    _yosys(design, "subs", [*_prep(module), f"select {module}/*queue.$sub$*", "write_json -selected subs.json"])
    cells = json.loads((design / "subs.json").read_text())["modules"][module]["cells"]
    name, cell = sorted(cells.items())[0]
    assert cell["type"] == "$sub"
    top = int(cell["parameters"]["Y_WIDTH"], 2) - 1
    depth = info["latency_cycles"] + BOUNDED_EXTRA

    def mutant(number, bit):
        return {"id": number, "line": f"mutate -mode inv -module {module} -cell {name} -port Y -portbit {bit}"}

    assert prove_equivalent(design, module, mutant(1, top), depth) == "equiv_induct"
    assert (design / "equiv_1.blacklist").read_text().strip(), "proven without leaving the bit out"
    assert prove_equivalent(design, module, mutant(2, 0), depth) is None
