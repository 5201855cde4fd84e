"""Formal proofs of the N:M decoders (nmforge.fpga.formal: SymbiYosys + z3 from PyPI, no mocks).

* every decoder (index and bitmap encodings, M in {4, 8, 16}, 8-bit elements) is proved equal to the
  hand-written Verilog reference for all inputs;
* deliberately wrong decoders make the proof fail, on the expected assertion (hand-written fixtures in
  tests/fixtures/ and mutants of the Amaranth decoders), so the miter's assertions are not vacuous;
* the reference itself agrees with the golden model (golden/nm.py), evaluated by Yosys `eval`, so
  the chain golden == reference == RTL is closed;
* cocotb-free checks of `BitmapDecoder`: it elaborates for several element shapes, and the Amaranth
  simulator agrees with golden/nm.py;
* the run-time pattern decoder (`RuntimeNMDecoder`, every pattern of a 4:8 and a 2:4 design) is
  proved equal to its hand-written reference; a wrong fixture and a mutant fail; the reference
  agrees with golden/nm.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from amaranth import Module, Mux, Signal, Value, signed, unsigned
from amaranth.back import verilog
from amaranth.lib import data
from amaranth.sim import Simulator

from nmforge.fpga import tools
from nmforge.fpga.formal import (DUT_MODULE, decoder_verilog_for, miter_verilog, prove_decoder,
                                 prove_runtime_decoder, reference_verilog,
                                 runtime_reference_verilog)
from nmforge.golden.nm import (bitmap_to_indices, malformed_bitmap_groups, malformed_groups,
                               pattern_id_bits, runtime_bad_groups, runtime_index_bits,
                               runtime_patterns)
from nmforge.rtl.decoder import (BitmapDecoder, NMDecoder, RuntimeNMDecoder, _any,
                                 bitmap_malformed, bitmap_prefix_counts)

FIXTURES = Path(__file__).parent / "fixtures"
WIDTH = 8
PATTERNS = [(2, 4), (1, 4), (4, 8), (2, 8), (8, 16), (4, 16)]
CASES = [(enc, n, m) for enc in ("index", "bitmap") for n, m in PATTERNS] + [("bitmap", 4, 4)]  # + dense


def _id(case):
    enc, n, m = case
    return f"{enc}-{n}of{m}"


# --- the proofs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=_id)
def test_decoder_proved_equal_to_reference(case, tmp_path):
    enc, n, m = case
    result = prove_decoder(enc, n, m, tmp_path / "proof", width=WIDTH)
    assert result.passed, result.summary()
    assert result.status == "PASS" and result.trace is None
    assert "successful proof by k-induction" in result.log.read_text()
    # the proof covered the Amaranth decoder of this pattern
    dut = (tmp_path / "proof" / f"{DUT_MODULE}.v").read_text()
    assert f"module {DUT_MODULE}(" in dut
    if n < m:
        assert f"input [{n * (m - 1).bit_length() - 1 if enc == 'index' else m - 1}:0] " \
               f"{'indices' if enc == 'index' else 'bitmap'};" in dut


# --- deliberately wrong decoders must fail ------------------------------------------------------

def _assert_fails(result, expected):
    assert not result.passed
    assert result.status == "FAIL", result.summary()  # a counterexample, not a tool error
    assert result.trace is not None and result.trace.is_file()
    assert set(expected) <= set(result.failed), result.summary()


def test_wrong_index_decoder_fails(tmp_path):
    """Fixture: 2:4 index decoder swapping the operands for the index pair (1, 2)."""
    result = prove_decoder("index", 2, 4, tmp_path, FIXTURES / "wrong_index_decoder_2_4.v")
    _assert_fails(result, ["miter.operand_0_agrees", "miter.operand_1_agrees"])
    assert "miter.malformed_agrees" not in result.failed


def test_wrong_bitmap_decoder_fails(tmp_path):
    """Fixture: 4:8 bitmap decoder whose popcount ignores the top bit (given as Verilog text)."""
    text = (FIXTURES / "wrong_bitmap_decoder_4_8.v").read_text()
    result = prove_decoder("bitmap", 4, 8, tmp_path, text)
    _assert_fails(result, ["miter.malformed_agrees"])


class _LaxIndexDecoder(NMDecoder):
    """Mutant: accepts repeated indices (`>` where SPEC §1 needs `>=`)."""

    def elaborate(self, platform):
        m = Module()
        for i in range(self.n):
            m.d.comb += self.operands[i].eq(self.group[self.indices[i]])
        m.d.comb += self.malformed.eq(_any([self.indices[i] > self.indices[i + 1]
                                            for i in range(self.n - 1)]))
        return m


class _NarrowWindowBitmapDecoder(BitmapDecoder):
    """Mutant: operand j's candidate window stops one position short (j .. M-N+j-1)."""

    def elaborate(self, platform):
        m = Module()
        group = Value.cast(self.group)
        elems = [group[i * WIDTH:(i + 1) * WIDTH] for i in range(self.m)]
        counts = bitmap_prefix_counts(self.bitmap)
        for j in range(self.n):
            picks = [Mux(self.bitmap[i] & (counts[i] == j), elems[i], 0)
                     for i in range(j, self.m - self.n + j)]
            m.d.comb += Value.cast(self.operands)[j * WIDTH:(j + 1) * WIDTH].eq(_any(picks))
        m.d.comb += self.malformed.eq(counts[-1] != self.n)
        return m


def test_mutant_index_decoder_fails(tmp_path):
    mutant = verilog.convert(_LaxIndexDecoder(2, 8, unsigned(WIDTH)), name=DUT_MODULE, emit_src=False)
    _assert_fails(prove_decoder("index", 2, 8, tmp_path, mutant), ["miter.malformed_agrees"])


def test_mutant_bitmap_decoder_fails(tmp_path):
    mutant = verilog.convert(_NarrowWindowBitmapDecoder(2, 4, unsigned(WIDTH)), name=DUT_MODULE,
                             emit_src=False)
    result = prove_decoder("bitmap", 2, 4, tmp_path, mutant)
    _assert_fails(result, ["miter.operand_0_agrees"])
    assert "miter.malformed_agrees" not in result.failed


def test_unusable_decoder_is_an_error_not_a_pass(tmp_path):
    result = prove_decoder("index", 2, 4, tmp_path, "module something_else(); endmodule\n")
    assert not result.passed and result.status == "ERROR"
    assert "nm_decoder" in result.error


def test_generated_files(tmp_path):
    """The miter names one assertion per operand; the reference is hand-written, not Amaranth's."""
    miter = miter_verilog("bitmap", 4, 16, WIDTH)
    assert re.findall(r"(operand_\d+_agrees):", miter) == [f"operand_{j}_agrees" for j in range(4)]
    assert "malformed_agrees" in miter and "input [15:0] meta;" in miter
    for enc in ("index", "bitmap"):
        ref = reference_verilog(enc, 2, 4)
        assert f"module ref_{enc}_decoder" in ref and "Amaranth" not in ref
    assert "Amaranth" in decoder_verilog_for("bitmap", 2, 4)
    with pytest.raises(ValueError):
        miter_verilog("csr", 2, 4)
    with pytest.raises(ValueError):
        miter_verilog("index", 3, 6)


# --- the reference against the golden model ----------------------------------------------------

_EVAL_RE = re.compile(r"Eval result: \\(operands|malformed) = (\d+'[01]+|\d+)\.")


def _eval_int(token):
    """A Yosys `eval` value: ``<width>'<binary>`` or a plain decimal."""
    return int(token.split("'")[1], 2) if "'" in token else int(token)


def _eval_reference(enc, n, m, vectors, work):
    """Evaluate the reference model with Yosys `eval` on (group, metadata) integer pairs;
    returns [(operands as a list of ints, malformed)]."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "reference.v").write_text(reference_verilog(enc, n, m))
    meta = "indices" if enc == "index" else "bitmap"
    meta_bits = n * (m - 1).bit_length() if enc == "index" else m
    top = f"ref_{enc}_decoder"
    params = f"-set N {n} -set M {m} -set W {WIDTH}" + (f" -set IB {(m - 1).bit_length()}"
                                                        if enc == "index" else "")
    lines = ["read_verilog reference.v", f"chparam {params} {top}", f"prep -top {top}"]
    for group, word in vectors:
        lines.append(f"eval -set group {m * WIDTH}'d{group} -set {meta} {meta_bits}'d{word} "
                     f"-show operands -show malformed")
    (work / "eval.ys").write_text("\n".join(lines) + "\n")
    tools.run_tool("yosys", ["-l", "eval.log", "eval.ys"], cwd=work, log_file=work / "eval.log")
    found = _EVAL_RE.findall((work / "eval.log").read_text())
    assert len(found) == 2 * len(vectors)
    out = []
    for (k1, ops), (k2, bad) in zip(found[::2], found[1::2]):
        assert (k1, k2) == ("operands", "malformed")
        value = _eval_int(ops)
        out.append(([(value >> (j * WIDTH)) & 0xFF for j in range(n)], _eval_int(bad) == 1))
    return out


def _elements(group, m):
    return [(group >> (i * WIDTH)) & 0xFF for i in range(m)]


@pytest.mark.parametrize("n,m,exhaustive", [(2, 4, True), (4, 8, True), (4, 16, False)])
def test_reference_models_match_golden(n, m, exhaustive, tmp_path):
    rng = np.random.default_rng(m * 10 + n)
    ib = (m - 1).bit_length()
    for enc in ("index", "bitmap"):
        meta_bits = n * ib if enc == "index" else m
        if exhaustive and meta_bits <= 8:
            words = list(range(1 << meta_bits))
        else:  # random words, plus well-formed ones (rarely random for wide metadata)
            words = [int(w) for w in rng.integers(0, 1 << meta_bits, 120)]
            for _ in range(80):
                kept = sorted(rng.choice(m, n, replace=False))
                words.append(sum(int(k) << (j * ib) for j, k in enumerate(kept)) if enc == "index"
                             else sum(1 << int(k) for k in kept))
        groups = [int.from_bytes(rng.bytes(m), "little") for _ in words]
        results = _eval_reference(enc, n, m, list(zip(groups, words)), tmp_path / enc)
        for group, word, (ops, bad) in zip(groups, words, results):
            if enc == "index":
                idx = np.array([[(word >> (j * ib)) & ((1 << ib) - 1)] for j in range(n)])
                want_bad = bool(malformed_groups(idx, n, m)[0, 0])
                kept = idx[:, 0]
            else:
                want_bad = bool(malformed_bitmap_groups(np.array([[word]]), n, m)[0, 0])
                kept = None if want_bad else bitmap_to_indices(np.array([[word]]), n, m)[:, 0]
            assert bad == want_bad, (enc, hex(word))
            if not want_bad:
                elems = _elements(group, m)
                assert ops == [elems[k] for k in kept], (enc, hex(word))


# --- BitmapDecoder without cocotb ---------------------------------------------------------------

@pytest.mark.parametrize("shape", [unsigned(8), signed(4), data.StructLayout({"man": 3, "exp": 4, "sign": 1})],
                         ids=["u8", "s4", "struct"])
@pytest.mark.parametrize("n,m", [(1, 2), (2, 4), (2, 8), (8, 16), (4, 4)])
def test_bitmap_decoder_elaborates(n, m, shape):
    dec = BitmapDecoder(n, m, shape)
    text = verilog.convert(dec, name="bitmap_decoder", emit_src=False)
    assert "module bitmap_decoder(" in text
    width = len(Value.cast(dec.group)) // m
    assert f"input [{m * width - 1}:0] group;" in text
    assert f"output [{n * width - 1}:0] operands;" in text
    if n == m:
        assert "bitmap" not in text.replace("module bitmap_decoder", "")
    else:
        assert f"input [{m - 1}:0] bitmap;" in text


@pytest.mark.parametrize("n,m", [(1, 2), (2, 4), (1, 4), (4, 8), (2, 8), (8, 16), (4, 16)])
def test_bitmap_decoder_simulates_like_golden(n, m):
    dut = BitmapDecoder(n, m, signed(WIDTH))
    rng = np.random.default_rng(n * 100 + m)
    words = list(range(1 << m)) if m <= 8 else [int(w) for w in rng.integers(0, 1 << m, 200)] + [
        sum(1 << int(k) for k in rng.choice(m, n, replace=False)) for _ in range(200)]
    checked = []

    async def bench(ctx):
        for word in words:
            elems = [int(v) for v in rng.integers(-128, 128, m)]
            for i, v in enumerate(elems):
                ctx.set(dut.group[i], v)
            ctx.set(dut.bitmap, word)
            bad = bool(malformed_bitmap_groups(np.array([[word]]), n, m)[0, 0])
            assert ctx.get(dut.malformed) == bad, hex(word)
            if not bad:
                kept = bitmap_to_indices(np.array([[word]]), n, m)[:, 0]
                assert [ctx.get(dut.operands[j]) for j in range(n)] == [elems[k] for k in kept], hex(word)
                checked.append(word)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert checked  # well-formed bitmaps were exercised


@pytest.mark.parametrize("n,m", [(1, 2), (2, 4), (4, 8), (1, 8)])
def test_bitmap_malformed_helper(n, m):
    """`bitmap_malformed` (the helper other blocks share) flags exactly golden's malformed words."""
    top = Module()
    bitmap, bad = Signal(m), Signal()
    top.d.comb += bad.eq(bitmap_malformed(bitmap, n))
    words = np.arange(1 << m).reshape(-1, 1)
    want = malformed_bitmap_groups(words, n, m)[:, 0]

    async def bench(ctx):
        for word in range(1 << m):
            ctx.set(bitmap, word)
            assert ctx.get(bad) == bool(want[word]), hex(word)

    sim = Simulator(top)
    sim.add_testbench(bench)
    sim.run()


# --- run-time patterns (dual mode) ---------------------------------------------------------------

RUNTIME_DESIGNS = [(4, 8), (2, 4), (8, 16)]


@pytest.mark.parametrize("n,mmax", RUNTIME_DESIGNS, ids=lambda v: str(v))
def test_runtime_decoder_proved_equal_to_reference(n, mmax, tmp_path):
    """Every pattern of the N:Mmax table, every window, id and index word: the run-time decoder's
    bad-group count and flag equal the hand-written reference's, and so do its operands on
    well-formed metadata."""
    result = prove_runtime_decoder(n, mmax, tmp_path / "proof", width=WIDTH)
    assert result.passed, result.summary()
    assert "successful proof by k-induction" in result.log.read_text()
    dut = (tmp_path / "proof" / f"{DUT_MODULE}.v").read_text()
    assert f"input [{pattern_id_bits(n, mmax) - 1}:0] pattern;" in dut


def test_wrong_runtime_decoder_fails(tmp_path):
    """Fixture: a hand-written 2:4 run-time decoder that does not count unknown pattern ids."""
    result = prove_runtime_decoder(2, 4, tmp_path, FIXTURES / "wrong_runtime_decoder_2_4.v")
    _assert_fails(result, ["miter.malformed_agrees", "miter.bad_groups_agree"])
    assert not any("operand" in name for name in result.failed)


class _NarrowRuntimeDecoder(RuntimeNMDecoder):
    """Mutant: the last multiplier's block loses its last element (4:8: window position 31, read
    by 1:8 with index 7)."""

    def candidates(self, i):
        routes = super().candidates(i)
        return routes[:-1] if i == self.n - 1 else routes


def test_mutant_runtime_decoder_fails(tmp_path):
    mutant = verilog.convert(_NarrowRuntimeDecoder(4, 8, unsigned(WIDTH)), name=DUT_MODULE,
                             emit_src=False)
    result = prove_runtime_decoder(4, 8, tmp_path, mutant)
    _assert_fails(result, ["miter.operand_3_agrees"])
    assert "miter.malformed_agrees" not in result.failed


def test_runtime_reference_matches_golden(tmp_path):
    """The run-time reference, evaluated by Yosys `eval`, against golden/nm.py on well-formed
    words of every pattern and on random (unknown ids, malformed) ones."""
    n, mmax = 4, 8
    ib, pb = runtime_index_bits(mmax), pattern_id_bits(n, mmax)
    table = runtime_patterns(n, mmax)
    rng = np.random.default_rng(48)
    words = []
    for pid, (np_, mp) in enumerate(table):
        for _ in range(6):
            idx = np.concatenate([np.sort(rng.choice(mp, np_, replace=False))
                                  for _ in range(n // np_)])
            words.append((pid, [int(x) for x in idx]))
    words += [(int(rng.integers(1 << pb)), [int(x) for x in rng.integers(0, 1 << ib, n)])
              for _ in range(40)]
    windows = [[int(v) for v in rng.integers(0, 256, n * mmax)] for _ in words]
    work = tmp_path / "eval"
    work.mkdir()
    (work / "reference.v").write_text(runtime_reference_verilog(n, mmax))
    lines = ["read_verilog reference.v",
             f"chparam -set N {n} -set MMAX {mmax} -set W {WIDTH} -set IB {ib} -set PB {pb} "
             "ref_runtime_decoder", "prep -top ref_runtime_decoder"]
    for (pid, idx), window in zip(words, windows):
        group = sum(v << (p * WIDTH) for p, v in enumerate(window))
        word = sum(x << (i * ib) for i, x in enumerate(idx))
        lines.append(f"eval -set group {n * mmax * WIDTH}'d{group} -set pattern {pb}'d{pid} "
                     f"-set indices {n * ib}'d{word} -show operands -show bad_groups")
    (work / "eval.ys").write_text("\n".join(lines) + "\n")
    tools.run_tool("yosys", ["-l", "eval.log", "eval.ys"], cwd=work, log_file=work / "eval.log")
    found = re.findall(r"Eval result: \\(operands|bad_groups) = (\d+'[01x]+|\d+)\.",
                       (work / "eval.log").read_text())
    assert len(found) == 2 * len(words)
    want_bad = runtime_bad_groups(np.array([[pid for pid, _ in words]]),
                                  np.array([idx for _, idx in words]).T, n, mmax)[0]
    for k, ((pid, idx), window) in enumerate(zip(words, windows)):
        (name_ops, ops), (name_bad, bad) = found[2 * k], found[2 * k + 1]
        assert (name_ops, name_bad) == ("operands", "bad_groups")
        assert _eval_int(bad) == want_bad[k], (pid, idx)
        if not want_bad[k]:
            value = _eval_int(ops)
            assert [(value >> (i * WIDTH)) & 0xFF for i in range(n)] == \
                [window[i * mmax + idx[i]] for i in range(n)], (pid, idx)
