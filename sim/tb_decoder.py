"""N:M decoder check (combinational): every operand equals the addressed activation, and
`malformed` rises exactly on index groups golden.nm.malformed_groups rejects. Exhaustive over all
index tuples when there are at most 4096 of them, random otherwise; malformed tuples included.
Run-time designs (rtl.decoder.RuntimeNMDecoder): every pattern id (unknown ones too) with
well-formed and random index words; `bad_groups` must equal golden.nm.runtime_bad_groups and,
when it is 0, operand i must be element index of lane block i."""
import itertools

import cocotb
import numpy as np
from cocotb.triggers import Timer

from ..golden.ints import random_ints
from ..golden.nm import (malformed_groups, pattern_id_bits, runtime_bad_groups,
                         runtime_index_bits, runtime_patterns)
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


def runtime_words(rng, n, mmax, count):
    """(pattern id, indices): well-formed words of every pattern, then random ones."""
    table = runtime_patterns(n, mmax)
    for _ in range(count):
        pid = int(rng.integers(len(table)))
        np_, mp = table[pid]
        yield pid, [int(x) for g in range(n // np_) for x in sorted(rng.choice(mp, np_, replace=False))]
    for _ in range(count):
        yield (int(rng.integers(1 << pattern_id_bits(n, mmax))),
               [int(x) for x in rng.integers(0, 1 << runtime_index_bits(mmax), n)])


async def runtime_decoder(dut, info):
    p, ports = info["parameters"], info["interfaces"]
    n, mmax = p["n"], p["m"]
    element = ports["group"]["layout"]["element"]
    width, signed = element["width"], element["signed"]
    rng, _ = rngs()
    seen, bad_seen = set(), 0
    for pid, idx in runtime_words(rng, n, mmax, RANDOM_TRIALS // 2):
        window = random_ints(rng, n * mmax, width, signed=signed)
        dut.group.value = pack(ports["group"]["layout"], window)
        dut.pattern.value = pid
        dut.indices.value = pack(ports["indices"]["layout"], idx)
        await Timer(1, unit="ns")
        want_bad = int(runtime_bad_groups(np.array([[pid]]), np.array(idx).reshape(n, 1), n, mmax)[0, 0])
        assert int(dut.bad_groups.value) == want_bad, f"pattern {pid} indices {idx}: {int(dut.bad_groups.value)} bad groups"
        assert bool(dut.malformed.value) == (want_bad > 0), f"pattern {pid} indices {idx}"
        if not want_bad:
            operands = unpack(ports["operands"]["layout"], int(dut.operands.value))
            assert operands == [int(window[i * mmax + idx[i]]) for i in range(n)], f"pattern {pid} indices {idx}"
            seen.add(pid)
        bad_seen += want_bad > 0
    dut._log.info(f"checked {RANDOM_TRIALS} words, {bad_seen} malformed, patterns {sorted(seen)}")
    assert seen == set(range(len(runtime_patterns(n, mmax)))) and bad_seen > 0


@cocotb.test()
async def decoder_selects_and_flags(dut):
    info = manifest()
    p = info["parameters"]
    if p.get("runtime"):
        await runtime_decoder(dut, info)
        return
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
