"""A program for the accelerator testbench (sim.tb_accel): command words, data-in words and the
golden executor's expectation, as one JSON file."""
import json

from ..golden.accel import Executor
from ..rtl.isa import encode


def expected_run(shape, commands, data_in):
    """What the golden executor says a program produces: STORE packets and the final status."""
    executor = Executor(shape)
    packets = executor.run(commands, data_in)
    st = executor.status
    return {"packets": [[int(w) for w in p] for p in packets],
            "status": {"cmd_error": int(st.cmd_error), "error_code": st.error_code.value,
                       "overflow": int(st.overflow), "meta_error": int(st.meta_error),
                       "bad_groups": st.bad_groups, "array_beats": st.array_beats}}


def write_program(path, shape, commands, data_in):
    """Write the program file tb_accel runs (NMFORGE_PROGRAM); returns the expectation."""
    expected = expected_run(shape, commands, data_in)
    with open(path, "w") as f:
        json.dump({"commands": [encode(c) for c in commands],
                   "data_in": [int(w) for w in data_in], "expected": expected}, f)
    return expected
