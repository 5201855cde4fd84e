"""The array's Verilog defines each PE and result slot once and instantiates them R x C times."""
import re
import time

from conftest import make_config

from nmforge.gen.elaborate import build, to_verilog


def test_one_pe_module_instantiated_at_every_position():
    config = make_config(name="shared", rows=3, cols=4)
    text = to_verilog(build(config), config.name)
    modules = re.findall(r"^module (\S+)", text, flags=re.M)
    assert len(modules) == len(set(modules))
    assert modules.count("\\shared.pe") == 1 and modules.count("\\shared.result_slot") == 1
    instances = re.findall(r"^  \\shared\.pe  pe_(\d)_(\d) \(", text, flags=re.M)
    assert sorted(instances) == [(str(r), str(c)) for r in range(3) for c in range(4)]
    assert len(re.findall(r"^  \\shared\.result_slot  result_slot_\d_\d \(", text, flags=re.M)) == 12
    assert text.count("(* top =") == 1  # the array alone is the top module


def test_generation_time_does_not_grow_with_the_pe_count():
    """A 16x16 array (256 PEs) converts in well under the 19 s it took with one module per PE."""
    config = make_config(name="big", rows=16, cols=16)
    started = time.process_time()
    to_verilog(build(config), config.name)
    assert time.process_time() - started < 8, "16x16 generation took over 8 CPU-s in Python"
