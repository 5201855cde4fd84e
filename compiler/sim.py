"""`nmforge run --on sim`: the program on the Verilator-simulated accelerator (sim.tb_accel).

The host's part is deterministic integer code, so the run is recorded once on the golden
executor (`runtime.record_device_run`: every device step of every batch, with the data-in words
the host computed from the previous steps' results) and the whole command list is replayed in
ONE simulation from reset: tb_accel checks every STORE packet and the final status against the
golden executor bit for bit, so the outputs the host would have received from the RTL are the
golden ones (any difference fails the run). One build, one simulator start, the preamble (weight
loads) once; `cycles` is the testbench's count from the first command to idle. While it runs,
the testbench reports the result words it has received (NMFORGE_PROGRESS), which say how many
inputs' results are complete.
"""
from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import pathlib
import threading

from ..gen.config import parse_config
from ..gen.generate import generate
from ..sim.accel_program import write_program
from ..sim.regression import run_regression
from .runtime import Program, record_device_run

POLL_S = 0.5   # how often the progress file is read


def run_on_sim(program: Program, x, work_dir, seed=1, stall=0.0, progress=None,
               record_progress=None, log=print):
    """(outputs, sim result dict {passed, cycles, busy_cycles, array_beats, log, recorded:
    (commands, labels) as runtime.record_device_run}) of `x` on the simulated accelerator.
    `record_progress` follows the golden recording (runtime.run_program's progress);
    `progress(done, total, "sim")` the simulation: inputs whose results are all out."""
    work = pathlib.Path(work_dir)
    outputs, commands, data_in, labels = record_device_run(program, x, record_progress)
    config = parse_config(program.spec["design"], source="program.json design")
    generated = generate(config, work, "accelerator")
    program_file = work / "sim_program.json"
    expected = write_program(program_file, program.shape, commands, data_in)
    result_file = work / "sim_result.json"
    result_file.unlink(missing_ok=True)
    progress_file = work / "sim_progress"
    progress_file.unlink(missing_ok=True)
    log(f"[sim] {len(commands)} commands, {len(data_in)} data-in words on Verilator")
    ends = _batch_ends(expected["packets"], -(-len(x) // program.batch))
    with _reporting(progress_file, ends, program.batch, len(x), progress):
        result = run_regression(generated.verilog, generated.manifest, work, seed,
                                options={"program": program_file.resolve(), "stall": stall,
                                         "result_json": result_file.resolve(),
                                         "progress": progress_file.resolve()}, log=log)
    figures = json.loads(result_file.read_text()) if result.passed and result_file.exists() else {}
    return outputs, {"passed": result.passed, "log": str(result.log), **figures,
                     "recorded": (commands, labels)}


def _batch_ends(packets, batches):
    """Data-out words received when each batch's results are complete (every batch runs the
    same steps, so the STORE packets split evenly)."""
    per_batch = len(packets) // batches
    return list(itertools.accumulate(sum(len(p) for p in packets[b * per_batch:(b + 1) * per_batch])
                                     for b in range(batches)))


@contextlib.contextmanager
def _reporting(path, ends, batch, rows, progress):
    """While the simulation runs: read its progress file every POLL_S and call
    progress(inputs done, rows, "sim") when the count changes."""
    if progress is None:
        yield
        return
    stop = threading.Event()

    def poll():
        shown, stopped = -1, False
        while not stopped:
            stopped = stop.wait(POLL_S)       # one more read after the simulation ended
            try:
                words = int(path.read_text())
            except (OSError, ValueError):
                continue                      # not written yet
            done = min(bisect.bisect_right(ends, words) * batch, rows)
            if done != shown:
                progress(done, rows, "sim")
                shown = done

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
