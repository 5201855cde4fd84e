"""`nmforge run --on sim`: the program on the Verilator-simulated accelerator (sim.tb_accel).

The host's part is deterministic integer code, so the run is recorded once on the golden
executor (`runtime.record_device_run`: every device step of every batch, with the data-in words
the host computed from the previous steps' results) and the whole command list is replayed in
ONE simulation from reset: tb_accel checks every STORE packet and the final status against the
golden executor bit for bit, so the outputs the host would have received from the RTL are the
golden ones (any difference fails the run). One build, one simulator start, the preamble (weight
loads) once; `cycles` is the testbench's count from the first command to idle.
"""
from __future__ import annotations

import json
import pathlib

from ..gen.config import parse_config
from ..gen.generate import generate
from ..sim.accel_program import write_program
from ..sim.regression import run_regression
from .runtime import Program, record_device_run


def run_on_sim(program: Program, x, work_dir, seed=1, stall=0.0, progress=None, log=print):
    """(outputs, sim result dict {passed, cycles, busy_cycles, array_beats, log, recorded:
    (commands, labels) as runtime.record_device_run}) of `x` on the simulated accelerator."""
    work = pathlib.Path(work_dir)
    outputs, commands, data_in, labels = record_device_run(program, x, progress)
    config = parse_config(program.spec["design"], source="program.json design")
    generated = generate(config, work, "accelerator")
    program_file = work / "sim_program.json"
    write_program(program_file, program.shape, commands, data_in)
    result_file = work / "sim_result.json"
    result_file.unlink(missing_ok=True)
    log(f"[sim] {len(commands)} commands, {len(data_in)} data-in words on Verilator")
    result = run_regression(generated.verilog, generated.manifest, work, seed,
                            options={"program": program_file.resolve(), "stall": stall,
                                     "result_json": result_file.resolve()}, log=log)
    figures = json.loads(result_file.read_text()) if result.passed and result_file.exists() else {}
    return outputs, {"passed": result.passed, "log": str(result.log), **figures,
                     "recorded": (commands, labels)}
