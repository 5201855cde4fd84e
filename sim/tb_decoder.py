"""N:M decoder check (combinational): every operand equals the addressed activation, and
`malformed` rises exactly on index groups golden.nm.malformed_groups rejects. Exhaustive over all
index tuples when there are at most 4096 of them, random otherwise; malformed tuples included."""
import itertools

import cocotb
import numpy as np
from cocotb.triggers import Timer

from ..golden.ints import random_ints
from ..golden.nm import malformed_groups
from .harness import manifest, rngs
from .payload import pack, unpack

EXHAUSTIVE_LIMIT = 4096
RANDOM_TRIALS = 2000


def index_tuples(rng, n, m):
    if m ** n <= EXHAUSTIVE_LIMIT:
        yield from itertools.product(range(m), repeat=n)
    else:
        for _ in range(RANDOM_TRIALS // 2):
            yield tuple(int(i) for i in rng.integers(0, m, n))
        for _ in range(RANDOM_TRIALS // 2):  # well-formed tuples are rare among random ones
            yield tuple(sorted(int(i) for i in rng.choice(m, n, replace=False)))


@cocotb.test()
async def decoder_selects_and_flags(dut):
    info = manifest()
    p = info["parameters"]
    ports = info["interfaces"]
    element = ports["group"]["layout"]["element"]  # an integer, or a PE kind's format code
    n, m, width, signed = p["n"], p["m"], element["width"], element["signed"]
    extreme = -(1 << (width - 1)) if signed else (1 << width) - 1
    rng, _ = rngs()
    checked = malformed_seen = 0
    tuples = [tuple(range(n))] if p["dense"] else index_tuples(rng, n, m)
    for indices in tuples:
        group = random_ints(rng, m, width, signed=signed)
        group[rng.integers(0, m)] = extreme
        dut.group.value = pack(ports["group"]["layout"], group)
        if not p["dense"]:
            dut.indices.value = pack(ports["indices"]["layout"], indices)
        await Timer(1, unit="ns")
        operands = unpack(ports["operands"]["layout"], int(dut.operands.value))
        expect_bad = bool(malformed_groups(np.array(indices).reshape(n, 1), n, m)[0, 0])
        assert bool(dut.malformed.value) == expect_bad, f"indices {indices}: malformed={int(dut.malformed.value)}"
        if not expect_bad:
            assert operands == [int(group[i]) for i in indices], f"indices {indices}: {operands} from {list(group)}"
        checked += 1
        malformed_seen += expect_bad
    dut._log.info(f"checked {checked} index tuples, {malformed_seen} of them malformed")
    assert checked > 0 and (p["dense"] or n == 1 or malformed_seen > 0)  # one index is never malformed
