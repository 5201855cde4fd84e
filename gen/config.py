"""Design configuration: one TOML file describes one generated design.

File format
-----------
::

    name = "nm24_int8_4x4"        # top-level Verilog module name (see below)

    [array]
    rows = 4                       # integer 1..64
    cols = 4                       # integer 1..64
    dataflow = "output_stationary" # one of DATAFLOWS (see "Dataflows" below)

    [sparsity]
    nm = "2:4"                     # "N:M", M in {2, 4, 8, 16}, 1 <= N <= M; N == M means dense
    encoding = "index"             # optional: one of NM_ENCODINGS, default "index"
    runtime = false                # optional: true = also run every smaller pattern (see below)

    [pe]
    kind = "int"                   # one of PE_KINDS; the other keys depend on it
    act_width = 8                  # signed integer activation bits, 2..16
    weight_width = 8               # signed integer weight bits, 2..16
    acc_width = 32                 # act_width + weight_width .. 48
    overflow = "wrap"              # one of OVERFLOW_MODES; either way a sticky overflow flag exists

    [synth]                        # optional table
    clock_mhz = 120.0              # target clock for place and route, 1..1000, default 120

    [accelerator]                  # optional table: wrap the array in buffers + a controller
    stream_width = 64              # data-in / data-out tdata bits: one of STREAM_WIDTHS
    act_depth = 512                # words of each buffer (rtl.isa: ACT, WEIGHT, PARAM, OUT),
    weight_depth = 1024            #   integer BUFFER_DEPTH_RANGE; defaults ACCELERATOR_DEFAULTS
    param_depth = 256
    out_depth = 1024

The ``[accelerator]`` table (every key optional) makes the design's top level the accelerator
(rtl.accelerator) around the array; it needs ``pe.kind`` in ACCELERATOR_PE_KINDS and
``pe.acc_width`` <= ``stream_width``; run-time patterns are chosen per GEMM command
(rtl.isa ``pattern``).

Dataflows
---------
``"output_stationary"``: a rows x cols systolic array; each PE owns one output and reduces one
K-group of M per beat. ``"dot_product"``: cols reduction trees without systolic skew; each
owns one output of a 1 x cols tile and reduces ``rows`` consecutive K-groups (rows*M
activations, one row's, broadcast to every column) per beat through rows*N multipliers and an
adder tree. ``"weight_stationary"``: a rows x cols systolic array; PE (r, c) holds K-group r
of a K-block of rows*M for output column c (a tile loaded while the one before computes);
activations stream through the rows, partial sums flow down the columns. All have
rows*cols*N multipliers. Dataflows other than output-stationary are implemented for the pe.kinds
in DATAFLOW_PE_KINDS; run-time patterns for RUNTIME_DATAFLOWS too; with kind "mx" a beat's
rows*M elements (a dot-product beat, a weight-stationary K-block) must lie in one scale block
(``block_size`` a multiple of rows*M), with kind "mpgemm" in one quantization group
(``group_size`` a multiple of rows*M). On "weight_stationary" kind "fp" keeps exact partial
sums rounded once after the last K-block (``accumulate = "exact"``) or adds each K-group's sum
in FP32 in K order (``"fp32"``).

Run-time patterns
-----------------
``runtime = true`` (dual mode) reads ``nm = "N:Mmax"`` as N multipliers per PE and groups of up
to Mmax: the design runs, chosen per beat by a pattern id that travels with the weights, dense and
every N':M' with M' in {2, 4, 8, 16}, M' <= Mmax, N' dividing N and N' < M'
(golden.nm.runtime_patterns; 4:8 runs dense, 1:2, 1:4, 2:4, 1:8, 2:8 and 4:8). It needs
``encoding = "index"`` and ``pe.kind = "int"`` (RUNTIME_PE_KINDS).

PE kinds
--------
``pe.kind`` selects the multiply-accumulate unit of every PE, and the kind decides which other
``[pe]`` keys exist (``PE_KIND_SCHEMAS``: one entry per kind, so a new kind adds one entry):

- ``"int"`` (above): signed integer products into a wrap/saturate accumulator.
- ``"fp"``: floating-point element codes, exact products, FP32 results::

      [pe]
      kind = "fp"
      act_format = "fp8_e4m3"      # one of FP_FORMATS
      weight_format = "fp8_e4m3"   # one of FP_FORMATS; may differ from act_format
      accumulate = "exact"         # one of FP_ACCUMULATE_MODES: "exact" (wide fixed point,
                                   # rounded once to FP32) or "fp32" (FP32 RNE additions)

- ``"scalable"``: precision-scalable integer lanes (Bit Fusion style); keys ``acc_width``,
  ``overflow`` (activation words are 8 bits, weight words 8 bits plus a 3-bit mode per lane).
- ``"mpgemm"``: low-bit weights times INT8/INT16 activations with a per-group scale and zero
  point and a dyadic requantized output; keys ``act_format`` (one of MPGEMM_ACT_FORMATS),
  ``weight_format`` (one of MPGEMM_WEIGHT_FORMATS), ``group_size`` (one of MPGEMM_GROUP_SIZES,
  a multiple of M), ``out_width`` (integer OUT_WIDTH_RANGE).
- ``"mx"``: OCP MX block dot products; keys ``format`` (one of MX_FORMATS), ``block_size``
  (must be 32, MX_BLOCK_SIZES).
- ``"bitserial"``: one weight bit-plane per beat, shift-accumulate; keys ``act_width``,
  ``weight_width`` (the most weight bits a beat's plane index can address), ``acc_width``,
  ``overflow``.
- ``"posit"``: posit codes, exact products, quire accumulation; key ``format`` (one of
  POSIT_FORMATS).


A key of another kind (``act_format`` with ``kind = "int"``, ``acc_width`` with ``kind = "fp"``)
is an error naming the keys of the chosen kind.

Every key above is required except the ``[synth]`` table and its ``clock_mhz`` key. Unknown keys
and tables are errors, at every level. Integers must be TOML integers (a boolean or a float is not
an integer; ``clock_mhz`` may be either and is stored as a float). ``name`` must be a Verilog
identifier ``[A-Za-z_][A-Za-z0-9_]*`` (``$`` and escaped identifiers are legal Verilog but are
refused: the name also becomes a file name) that is not a
Verilog-2005 or SystemVerilog (IEEE 1800-2017) keyword.

Errors
------
Every problem raises :class:`ConfigError`, whose ``field`` is the dotted key (``"sparsity.nm"``,
``"pe.act_width"``, ``"array.rows"``; ``"file"`` for an unreadable or syntactically invalid file)
and whose text is always one line::

    <source>: <field>: <problem>; allowed: <allowed values>

Public API
----------
``Config``, ``ConfigError``, ``load_config(path)``, ``parse_config(mapping, source)``,
``DEFAULT_EXAMPLE``, ``PE_KIND_SCHEMAS`` (``PeKindSchema`` per kind name), and the allowed-value
tuples ``DATAFLOWS``, ``PE_KINDS``, ``OVERFLOW_MODES``, ``FP_FORMATS``,
``FP_ACCUMULATE_MODES``, ``NM_M_VALUES``.
A :class:`Config` validates itself on construction, so ``dataclasses.replace`` cannot produce an
invalid design either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any

__all__ = [
    "Config",
    "ConfigError",
    "load_config",
    "parse_config",
    "DEFAULT_EXAMPLE",
    "DATAFLOWS",
    "DATAFLOW_PE_KINDS",
    "PE_KINDS",
    "PE_KIND_SCHEMAS",
    "PeKindSchema",
    "OVERFLOW_MODES",
    "FP_FORMATS",
    "FP_ACCUMULATE_MODES",
    "NM_M_VALUES",
]

#: Default example design, relative to the repository root.
DEFAULT_EXAMPLE = "examples/nm24_int8_4x4.toml"

#: Allowed ``array.dataflow`` values (later dataflows add one entry each).
DATAFLOWS: tuple[str, ...] = ("output_stationary", "dot_product", "weight_stationary")
#: Dataflows besides "output_stationary" that run run-time patterns.
RUNTIME_DATAFLOWS: tuple[str, ...] = ("weight_stationary",)
#: PE kinds each dataflow other than "output_stationary" is implemented for.
DATAFLOW_PE_KINDS: dict[str, tuple[str, ...]] = {"dot_product": ("int", "fp", "mx", "posit",
                                                                 "scalable", "mpgemm",
                                                                 "bitserial"),
                                                 "weight_stationary": ("int", "fp", "mx",
                                                                       "posit", "scalable",
                                                                       "mpgemm", "bitserial")}
#: Allowed ``pe.overflow`` values (kind "int").
OVERFLOW_MODES: tuple[str, ...] = ("wrap", "saturate")
#: Allowed ``pe.act_format`` / ``pe.weight_format`` values (kind "fp"): golden.formats names.
FP_FORMATS: tuple[str, ...] = ("fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1", "bf16")
#: Allowed ``pe.accumulate`` values (kind "fp").
FP_ACCUMULATE_MODES: tuple[str, ...] = ("exact", "fp32")
# Code width of each FP_FORMATS entry (golden.formats is the reference; tests cross-check).
_FORMAT_BITS: dict[str, int] = {"fp8_e4m3": 8, "fp8_e5m2": 8, "fp6_e3m2": 6, "fp6_e2m3": 6,
                                "fp4_e2m1": 4, "bf16": 16}
#: Allowed group sizes M of an "N:M" pattern.
NM_M_VALUES: tuple[int, ...] = (2, 4, 8, 16)
#: Allowed ``sparsity.encoding`` values: N indices per group, or an M-bit bitmap (SPEC 1).
NM_ENCODINGS: tuple[str, ...] = ("index", "bitmap")
#: PE kinds that support ``sparsity.runtime = true`` (run-time patterns need index metadata).
RUNTIME_PE_KINDS: tuple[str, ...] = ("int",)
#: Allowed ``pe.act_format`` / ``pe.weight_format`` values of kind "mpgemm".
MPGEMM_ACT_FORMATS: tuple[str, ...] = ("int8", "int16")
MPGEMM_WEIGHT_FORMATS: tuple[str, ...] = ("int4", "int2", "uint4", "uint2")
#: Allowed ``pe.group_size`` values of kind "mpgemm" (K elements sharing a scale and zero point).
MPGEMM_GROUP_SIZES: tuple[int, ...] = (16, 32, 64, 128)
OUT_WIDTH_RANGE = (4, 32)
#: Allowed ``pe.format`` values of kind "mx" (golden.mx.MX_FORMATS) and its block sizes.
MX_FORMATS: tuple[str, ...] = ("mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4",
                               "mxint8")
MX_BLOCK_SIZES: tuple[int, ...] = (32,)
#: Allowed ``pe.format`` values of kind "posit" (golden.formats names).
POSIT_FORMATS: tuple[str, ...] = ("posit8_0", "posit16_1")
# Code width of each format name used by a PE kind (golden.formats is the reference).
_FORMAT_BITS.update({"int8": 8, "int16": 16, "int4": 4, "int2": 2, "uint4": 4, "uint2": 2,
                     "mxfp8_e4m3": 8, "mxfp8_e5m2": 8, "mxfp6_e3m2": 6, "mxfp6_e2m3": 6,
                     "mxfp4": 4, "mxint8": 8, "posit8_0": 8, "posit16_1": 16})

ROWS_RANGE = (1, 64)
COLS_RANGE = (1, 64)
ACT_WIDTH_RANGE = (2, 16)
WEIGHT_WIDTH_RANGE = (2, 16)
ACC_WIDTH_MAX = 48
CLOCK_MHZ_RANGE = (1.0, 1000.0)
DEFAULT_CLOCK_MHZ = 120.0

# Verilog-2005 (IEEE 1364-2005) and SystemVerilog (IEEE 1800-2017, Annex B) reserved keywords.
# The longest config name: the file names derived from it (e.g. "<name>_decoder.manifest.json",
# a Verilator build directory "<name>-<hash>-waves") stay within the usual 255-byte limit.
NAME_MAX_CHARS = 200

VERILOG_KEYWORDS: frozenset[str] = frozenset("""
accept_on alias always always_comb always_ff always_latch and assert assign assume automatic before
begin bind bins binsof bit break buf bufif0 bufif1 byte case casex casez cell chandle checker class
clocking cmos config const constraint context continue cover covergroup coverpoint cross deassign
default defparam design disable dist do edge else end endcase endchecker endclass endclocking
endconfig endfunction endgenerate endgroup endinterface endmodule endpackage endprimitive endprogram
endproperty endspecify endsequence endtable endtask enum event eventually expect export extends
extern final first_match for force foreach forever fork forkjoin function generate genvar global
highz0 highz1 if iff ifnone ignore_bins illegal_bins implements implies import incdir include
initial inout input inside instance int integer interconnect interface intersect join join_any
join_none large let liblist library local localparam logic longint macromodule matches medium
modport module nand negedge nettype new nexttime nmos nor noshowcancelled not notif0 notif1 null or
output package packed parameter pmos posedge primitive priority program property protected pull0
pull1 pulldown pullup pulsestyle_ondetect pulsestyle_onevent pure rand randc randcase randsequence
rcmos real realtime ref reg reject_on release repeat restrict return rnmos rpmos rtran rtranif0
rtranif1 s_always s_eventually s_nexttime s_until s_until_with scalared sequence shortint shortreal
showcancelled signed small soft solve specify specparam static string strong strong0 strong1 struct
super supply0 supply1 sync_accept_on sync_reject_on table tagged task this throughout time
timeprecision timeunit tran tranif0 tranif1 tri tri0 tri1 triand trior trireg type typedef union
unique unique0 unsigned until until_with untyped use uwire var vectored virtual void wait wait_order
wand weak weak0 weak1 while wildcard wire with within wor xnor xor
""".split())

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NM_RE = re.compile(r"([0-9]+):([0-9]+)")

# Schema: table -> ordered keys (None is the top level). Order is the order of validation.
_TOP_KEYS = ("name", "array", "sparsity", "pe", "synth", "accelerator")
# The "pe" entry lists every key of every kind; PE_KIND_SCHEMAS says which apply.
_TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "array": ("rows", "cols", "dataflow"),
    "sparsity": ("nm", "encoding", "runtime"),
    "pe": ("kind", "act_width", "weight_width", "acc_width", "overflow",
           "act_format", "weight_format", "accumulate", "format", "block_size", "group_size",
           "out_width"),
    "synth": ("clock_mhz",),
    "accelerator": ("stream_width", "act_depth", "weight_depth", "param_depth", "out_depth"),
}
#: Allowed ``accelerator.stream_width`` values and buffer depths (words; 16-bit addresses).
STREAM_WIDTHS: tuple[int, ...] = (32, 64)
BUFFER_DEPTH_RANGE = (1, 1 << 16)
#: Defaults of the ``[accelerator]`` keys (sized for the 4x4 examples on the ECP5-85F).
ACCELERATOR_DEFAULTS: dict[str, int] = {"stream_width": 64, "act_depth": 512,
                                        "weight_depth": 1024, "param_depth": 256,
                                        "out_depth": 1024}
#: PE kinds the accelerator's output stage and buffers are implemented for.
ACCELERATOR_PE_KINDS: tuple[str, ...] = ("int", "fp", "mx")
# [pe] key -> Config attribute.
_PE_ATTRS: dict[str, str] = {"kind": "pe_kind", "act_width": "act_width",
                             "weight_width": "weight_width", "acc_width": "acc_width",
                             "overflow": "overflow", "act_format": "act_format",
                             "weight_format": "weight_format", "accumulate": "accumulate",
                             "format": "format", "block_size": "block_size",
                             "group_size": "group_size", "out_width": "out_width"}


@dataclasses.dataclass(frozen=True)
class PeKindSchema:
    """One ``pe.kind``: its ``[pe]`` keys (all required, besides ``kind``, in validation order)
    and a one-line description."""

    keys: tuple[str, ...]
    description: str


#: Every PE kind with its keys.
PE_KIND_SCHEMAS: dict[str, PeKindSchema] = {
    "int": PeKindSchema(("act_width", "weight_width", "acc_width", "overflow"),
                        "signed integer products, wrap/saturate accumulator"),
    "fp": PeKindSchema(("act_format", "weight_format", "accumulate"),
                       "floating-point codes, exact products, exact or FP32 accumulation"),
    "scalable": PeKindSchema(("acc_width", "overflow"),
                             "precision-scalable INT8/INT4/INT2 lanes (INT16 by composition)"),
    "mpgemm": PeKindSchema(("act_format", "weight_format", "group_size", "out_width"),
                           "low-bit weights, per-group scale and zero point, requantized output"),
    "mx": PeKindSchema(("format", "block_size"), "MX block dot products with E8M0 scales"),
    "bitserial": PeKindSchema(("act_width", "weight_width", "acc_width", "overflow"),
                              "one weight bit-plane per beat, shift-accumulate"),
    "posit": PeKindSchema(("format",), "posit products, exact quire accumulation"),
}
#: Allowed ``pe.kind`` values.
PE_KINDS: tuple[str, ...] = tuple(PE_KIND_SCHEMAS)


def _pe_keys(kind: str) -> tuple[str, ...]:
    """The ``[pe]`` keys of a kind, ``kind`` first."""
    return ("kind",) + PE_KIND_SCHEMAS[kind].keys
_OPTIONAL_TABLES = ("synth", "accelerator")
_OPTIONAL_KEYS = ("synth.clock_mhz", "sparsity.encoding", "sparsity.runtime",
                  *(f"accelerator.{key}" for key in ACCELERATOR_DEFAULTS))


def _one_line(text: str) -> str:
    """Collapse all line breaks and runs of whitespace into single spaces."""
    return " ".join(str(text).split())


def _choices(values) -> str:
    return ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values)


_ALLOWED_NM = (f"\"N:M\" with M in {{{_choices(NM_M_VALUES)}}} and 1 <= N <= M "
               "(N = M means dense)")
_ALLOWED: dict[str, str] = {
    "name": ("a Verilog identifier [A-Za-z_][A-Za-z0-9_]* of at most 200 characters (file "
             "names are made of it) that is not a Verilog-2005/SystemVerilog keyword"),
    "array": "a table with keys " + _choices(_TABLE_KEYS["array"]),
    "sparsity": "a table with keys " + _choices(_TABLE_KEYS["sparsity"]),
    "pe": ("a table with key 'kind' and that kind's keys: "
           + "; ".join(f"{k!r}: " + _choices(_pe_keys(k)) for k in PE_KINDS)),
    "synth": "a table with keys " + _choices(_TABLE_KEYS["synth"]),
    "array.rows": "integer {}..{}".format(*ROWS_RANGE),
    "array.cols": "integer {}..{}".format(*COLS_RANGE),
    "array.dataflow": _choices(DATAFLOWS),
    "sparsity.nm": _ALLOWED_NM,
    "pe.kind": _choices(PE_KINDS),
    "pe.act_width": "integer {}..{}".format(*ACT_WIDTH_RANGE),
    "pe.weight_width": "integer {}..{}".format(*WEIGHT_WIDTH_RANGE),
    "pe.acc_width": (f"integer pe.act_width + pe.weight_width .. {ACC_WIDTH_MAX} "
                     "(the lower bound depends on the activation and weight widths)"),
    "pe.overflow": _choices(OVERFLOW_MODES),
    "pe.act_format": _choices(FP_FORMATS),
    "pe.weight_format": _choices(FP_FORMATS),
    "pe.accumulate": _choices(FP_ACCUMULATE_MODES),
    "pe.block_size": _choices(MX_BLOCK_SIZES),
    "pe.group_size": _choices(MPGEMM_GROUP_SIZES) + " (a multiple of M)",
    "pe.out_width": "integer {}..{}".format(*OUT_WIDTH_RANGE),
    "sparsity.encoding": _choices(NM_ENCODINGS) + " (default 'index')",
    "sparsity.runtime": "true or false (default false)",
    "synth.clock_mhz": "number {:g}..{:g} (default {:g})".format(*CLOCK_MHZ_RANGE,
                                                               DEFAULT_CLOCK_MHZ),
    "accelerator": "a table with keys " + _choices(_TABLE_KEYS["accelerator"]),
    "accelerator.stream_width": _choices(STREAM_WIDTHS) + " (at least pe.acc_width)",
    **{f"accelerator.{key}": "integer {}..{}".format(*BUFFER_DEPTH_RANGE)
       for key in ACCELERATOR_DEFAULTS if key.endswith("_depth")},
}


class ConfigError(Exception):
    """An invalid design configuration.

    Attributes: ``source`` (file path or ``"<config>"``), ``field`` (dotted key, or ``"file"``),
    ``problem`` and ``allowed`` (``None`` when there is no allowed set). ``str()`` is one line:
    ``<source>: <field>: <problem>; allowed: <allowed>``.
    """

    def __init__(self, source: str, field: str, problem: str, allowed: str | None = None):
        self.source = _one_line(source)
        self.field = _one_line(field)
        self.problem = _one_line(problem)
        self.allowed = None if allowed is None else _one_line(allowed)
        msg = f"{self.source}: {self.field}: {self.problem}"
        if self.allowed is not None:
            msg += f"; allowed: {self.allowed}"
        super().__init__(msg)

    def __str__(self) -> str:
        return self.args[0]


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean " + ("true" if value else "false")
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "an array"
    return type(value).__name__


def _fail(source: str, field: str, problem: str) -> ConfigError:
    return ConfigError(source, field, problem, _ALLOWED.get(field))


def _check_int(source: str, field: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(source, field, f"expected an integer, got {_toml_type(value)}")
    if not lo <= value <= hi:
        raise _fail(source, field, f"{value} is out of range")


def _check_choice(source: str, field: str, value: Any, choices: tuple[str, ...],
                  allowed: str | None = None) -> None:
    """`value` must be one of `choices`; the error's allowed text is `allowed` (default: the
    field's entry of _ALLOWED)."""
    allowed = _ALLOWED.get(field) if allowed is None else allowed
    if not isinstance(value, str):
        raise ConfigError(source, field, f"expected a string, got {_toml_type(value)}", allowed)
    if value not in choices:
        raise ConfigError(source, field, f"unknown value {value!r}", allowed)


# Keys that several PE kinds share, with each kind's allowed values.
_KIND_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("fp", "act_format"): FP_FORMATS, ("fp", "weight_format"): FP_FORMATS,
    ("mpgemm", "act_format"): MPGEMM_ACT_FORMATS, ("mpgemm", "weight_format"): MPGEMM_WEIGHT_FORMATS,
    ("mx", "format"): MX_FORMATS, ("posit", "format"): POSIT_FORMATS,
}


def _kind_allowed(kind: str, key: str) -> str | None:
    """The allowed-values text of `key` for `kind` (None: the field's general entry applies)."""
    choices = _KIND_CHOICES.get((kind, key))
    return None if choices is None else f"{_choices(choices)} (for pe.kind {kind!r})"


def _check_kind_choice(source: str, field: str, value: Any, kind: str) -> None:
    """A key shared by several PE kinds with different allowed values."""
    key = field.split(".", 1)[1]
    _check_choice(source, field, value, _KIND_CHOICES[(kind, key)], _kind_allowed(kind, key))


def _check_int_choice(source: str, field: str, value: Any, choices: tuple[int, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(source, field, f"expected an integer, got {_toml_type(value)}")
    if value not in choices:
        raise _fail(source, field, f"{value} is not supported")


def _validate(source: str, cfg: "Config") -> None:
    """Check every field of a Config; raise ConfigError naming the first bad field."""
    name = cfg.name
    if not isinstance(name, str):
        raise _fail(source, "name", f"expected a string, got {_toml_type(name)}")
    if not _IDENT_RE.fullmatch(name):
        raise _fail(source, "name", f"{name!r} is not a legal Verilog identifier")
    if len(name) > NAME_MAX_CHARS:
        raise _fail(source, "name", f"{name[:20]!r}... has {len(name)} characters")
    if name in VERILOG_KEYWORDS:
        raise _fail(source, "name", f"{name!r} is a Verilog/SystemVerilog keyword")

    _check_int(source, "array.rows", cfg.rows, *ROWS_RANGE)
    _check_int(source, "array.cols", cfg.cols, *COLS_RANGE)
    _check_choice(source, "array.dataflow", cfg.dataflow, DATAFLOWS)

    n, m = cfg.n, cfg.m
    for part, v in (("N", n), ("M", m)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise _fail(source, "sparsity.nm", f"{part} must be an integer, got {_toml_type(v)}")
    if m not in NM_M_VALUES:
        raise ConfigError(source, "sparsity.nm", f"M={m} is not supported",
                          f"M in {{{_choices(NM_M_VALUES)}}}")
    if n < 1:
        raise ConfigError(source, "sparsity.nm", f"N={n} is below 1", "1 <= N <= M")
    if n > m:
        raise ConfigError(source, "sparsity.nm", f"N={n} exceeds M={m}",
                          "1 <= N <= M (N = M means dense)")

    _check_choice(source, "sparsity.encoding", cfg.encoding, NM_ENCODINGS)
    if not isinstance(cfg.runtime, bool):
        raise _fail(source, "sparsity.runtime", f"expected a boolean, got {_toml_type(cfg.runtime)}")
    if cfg.runtime and cfg.encoding != "index":
        raise ConfigError(source, "sparsity.encoding",
                          f"run-time patterns need index metadata, not {cfg.encoding!r}",
                          "'index' when sparsity.runtime = true")

    kind = cfg.pe_kind
    _check_pe_kind(source, kind)
    keys = PE_KIND_SCHEMAS[kind].keys
    for key, attr in _PE_ATTRS.items():
        if key != "kind" and key not in keys and getattr(cfg, attr) is not None:
            raise _not_for_kind(source, key, kind)
    _PE_VALIDATORS[kind](source, cfg)
    if cfg.runtime and cfg.pe_kind not in RUNTIME_PE_KINDS:
        raise ConfigError(source, "sparsity.runtime",
                          f"run-time patterns are not implemented for pe.kind {cfg.pe_kind!r}",
                          f"false, or true with pe.kind {_choices(RUNTIME_PE_KINDS)}")

    _validate_dataflow(source, cfg)

    clk = cfg.clock_mhz
    if isinstance(clk, bool) or not isinstance(clk, (int, float)):
        raise _fail(source, "synth.clock_mhz", f"expected a number, got {_toml_type(clk)}")
    lo, hi = CLOCK_MHZ_RANGE
    if not (math.isfinite(clk) and lo <= clk <= hi):
        raise _fail(source, "synth.clock_mhz", f"{clk!r} is out of range")
    if cfg.accelerator:
        _validate_accelerator(source, cfg)


def _validate_dataflow(source: str, cfg: "Config") -> None:
    """What a dataflow other than output-stationary is implemented for (DATAFLOW_PE_KINDS)."""
    if cfg.dataflow == "output_stationary":
        return
    kinds = DATAFLOW_PE_KINDS[cfg.dataflow]
    if cfg.pe_kind not in kinds:
        raise ConfigError(source, "array.dataflow",
                          f"{cfg.dataflow!r} is not implemented for pe.kind {cfg.pe_kind!r}",
                          f"'output_stationary', or {cfg.dataflow!r} with pe.kind {_choices(kinds)}")
    if cfg.runtime and cfg.dataflow not in RUNTIME_DATAFLOWS:
        raise ConfigError(source, "array.dataflow",
                          f"{cfg.dataflow!r} does not run run-time patterns",
                          f"'output_stationary', {_choices(RUNTIME_DATAFLOWS)} "
                          "when sparsity.runtime = true")
    span = cfg.rows * cfg.m
    beat = "beat" if cfg.dataflow == "dot_product" else "K-block"
    if cfg.pe_kind == "mx" and cfg.block_size % span:
        raise ConfigError(source, "array.rows",
                          f"a {beat} of rows*M = {span} elements crosses an MX block "
                          f"of {cfg.block_size}", f"rows*M dividing pe.block_size ({cfg.block_size})")
    if cfg.pe_kind == "mpgemm" and cfg.group_size % span:
        raise ConfigError(source, "array.rows",
                          f"a {beat} of rows*M = {span} elements crosses a quantization group "
                          f"of {cfg.group_size}", f"rows*M dividing pe.group_size ({cfg.group_size})")


def _validate_accelerator(source: str, cfg: "Config") -> None:
    """The [accelerator] keys, and the array features the accelerator is implemented for."""
    _check_int_choice(source, "accelerator.stream_width", cfg.stream_width, STREAM_WIDTHS)
    for key in ("act_depth", "weight_depth", "param_depth", "out_depth"):
        _check_int(source, f"accelerator.{key}", getattr(cfg, key), *BUFFER_DEPTH_RANGE)
    if cfg.pe_kind not in ACCELERATOR_PE_KINDS:
        raise ConfigError(source, "accelerator",
                          f"the accelerator is not implemented for pe.kind {cfg.pe_kind!r}",
                          f"no [accelerator] table, or pe.kind {_choices(ACCELERATOR_PE_KINDS)}")
    result_bits, result_key = ((cfg.acc_width, "pe.acc_width") if cfg.pe_kind == "int"
                               else (32, "the FP32 result"))
    if result_bits > cfg.stream_width:
        raise ConfigError(source, "accelerator.stream_width",
                          f"{cfg.stream_width} is narrower than {result_key} ({result_bits} bits)",
                          _ALLOWED["accelerator.stream_width"])


def _check_pe_kind(source: str, kind: Any) -> None:
    _check_choice(source, "pe.kind", kind, PE_KINDS)


def _not_for_kind(source: str, key: str, kind: str) -> ConfigError:
    return ConfigError(source, f"pe.{key}", f"key {key!r} does not apply to pe.kind {kind!r}",
                       f"keys {_choices(_pe_keys(kind))} (for pe.kind {kind!r})")


def _validate_int_pe(source: str, cfg: "Config") -> None:
    _check_int(source, "pe.act_width", cfg.act_width, *ACT_WIDTH_RANGE)
    _check_int(source, "pe.weight_width", cfg.weight_width, *WEIGHT_WIDTH_RANGE)
    _check_acc_width(source, cfg, cfg.act_width, cfg.weight_width)


def _check_acc_width(source: str, cfg: "Config", act_width: int, weight_width: int,
                     operands: str = "pe.act_width + pe.weight_width") -> None:
    """acc_width in act_width + weight_width .. ACC_WIDTH_MAX, then the overflow policy;
    `operands` names where the two widths come from."""
    acc_lo = act_width + weight_width
    acc = cfg.acc_width
    if isinstance(acc, bool) or not isinstance(acc, int):
        raise _fail(source, "pe.acc_width", f"expected an integer, got {_toml_type(acc)}")
    if not acc_lo <= acc <= ACC_WIDTH_MAX:
        raise ConfigError(
            source, "pe.acc_width", f"{acc} is out of range",
            f"integer {acc_lo}..{ACC_WIDTH_MAX} (lower bound is {operands} "
            f"= {act_width} + {weight_width}, so it depends on those widths)")
    _check_choice(source, "pe.overflow", cfg.overflow, OVERFLOW_MODES)


def _validate_fp_pe(source: str, cfg: "Config") -> None:
    _check_kind_choice(source, "pe.act_format", cfg.act_format, "fp")
    _check_kind_choice(source, "pe.weight_format", cfg.weight_format, "fp")
    _check_choice(source, "pe.accumulate", cfg.accumulate, FP_ACCUMULATE_MODES)


def _validate_scalable_pe(source: str, cfg: "Config") -> None:
    # 8-bit lane words; INT16 pieces add up to 2^16 * 2^15 per product: acc_width >= 32.
    _check_acc_width(source, cfg, 16, 16, "the INT16 x INT16 product composed from 8-bit lanes")


def _validate_mpgemm_pe(source: str, cfg: "Config") -> None:
    _check_kind_choice(source, "pe.act_format", cfg.act_format, "mpgemm")
    _check_kind_choice(source, "pe.weight_format", cfg.weight_format, "mpgemm")
    _check_int_choice(source, "pe.group_size", cfg.group_size, MPGEMM_GROUP_SIZES)
    if cfg.group_size % cfg.m:
        raise _fail(source, "pe.group_size", f"{cfg.group_size} is not a multiple of M={cfg.m}")
    _check_int(source, "pe.out_width", cfg.out_width, *OUT_WIDTH_RANGE)


def _validate_mx_pe(source: str, cfg: "Config") -> None:
    _check_kind_choice(source, "pe.format", cfg.format, "mx")
    _check_int_choice(source, "pe.block_size", cfg.block_size, MX_BLOCK_SIZES)


def _validate_bitserial_pe(source: str, cfg: "Config") -> None:
    _check_int(source, "pe.act_width", cfg.act_width, *ACT_WIDTH_RANGE)
    weight = cfg.weight_width
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 16:
        raise ConfigError(source, "pe.weight_width", f"{_toml_type(weight)} is not a weight width",
                          "integer 1..16 (for pe.kind 'bitserial': the most weight bit-planes)")
    _check_acc_width(source, cfg, cfg.act_width, cfg.weight_width)


def _validate_posit_pe(source: str, cfg: "Config") -> None:
    _check_kind_choice(source, "pe.format", cfg.format, "posit")


# Value checks of each kind's keys (the kind's schema says which keys exist).
_PE_VALIDATORS = {"int": _validate_int_pe, "fp": _validate_fp_pe,
                  "scalable": _validate_scalable_pe, "mpgemm": _validate_mpgemm_pe,
                  "mx": _validate_mx_pe, "bitserial": _validate_bitserial_pe,
                  "posit": _validate_posit_pe}


@dataclasses.dataclass(frozen=True)
class Config:
    """One validated design. Build it with :func:`load_config` or :func:`parse_config`."""

    name: str            # top-level Verilog module name
    rows: int            # PE rows
    cols: int            # PE columns
    dataflow: str        # one of DATAFLOWS
    n: int               # kept values per group (N of N:M)
    m: int               # group size along K (M of N:M)
    pe_kind: str         # one of PE_KINDS
    # Kind "int" (None for other kinds):
    act_width: int | None = None     # signed activation bits
    weight_width: int | None = None  # signed weight bits
    acc_width: int | None = None     # accumulator bits
    overflow: str | None = None      # one of OVERFLOW_MODES
    clock_mhz: float = DEFAULT_CLOCK_MHZ  # place-and-route target clock
    # Kind "fp" (None for other kinds):
    act_format: str | None = None    # one of FP_FORMATS
    weight_format: str | None = None  # one of FP_FORMATS
    accumulate: str | None = None    # one of FP_ACCUMULATE_MODES
    # Kinds "mx", "posit": the element format; "mx": its block size; "mpgemm": scale group
    # size along K and requantized output bits (None for other kinds):
    format: str | None = None
    block_size: int | None = None
    group_size: int | None = None
    out_width: int | None = None
    # [sparsity] options: metadata encoding, run-time patterns.
    encoding: str = "index"
    runtime: bool = False
    # [accelerator] (accelerator = False: no table, the array is the top level).
    accelerator: bool = False
    stream_width: int = ACCELERATOR_DEFAULTS["stream_width"]
    act_depth: int = ACCELERATOR_DEFAULTS["act_depth"]
    weight_depth: int = ACCELERATOR_DEFAULTS["weight_depth"]
    param_depth: int = ACCELERATOR_DEFAULTS["param_depth"]
    out_depth: int = ACCELERATOR_DEFAULTS["out_depth"]

    def __post_init__(self) -> None:
        _validate("<Config>", self)
        # Integer clock values are normalised so equal designs compare and hash equal.
        object.__setattr__(self, "clock_mhz", float(self.clock_mhz))

    @property
    def dense(self) -> bool:
        """True when N == M (every element of a group is used) and the pattern is fixed (a
        run-time design always has metadata)."""
        return self.n == self.m and not self.runtime

    @property
    def nm(self) -> str:
        """The pattern as the "N:M" string."""
        return f"{self.n}:{self.m}"

    @property
    def multipliers(self) -> int:
        """Physical multipliers in the array: rows * cols * N."""
        return self.rows * self.cols * self.n

    @property
    def dense_macs_per_cycle(self) -> int:
        """Dense-equivalent MACs per cycle at full utilisation: rows * cols * M (run-time
        designs: rows * cols * N * Mmax, their sparsest pattern 1:Mmax)."""
        return self.rows * self.cols * self.m * (self.n if self.runtime else 1)

    @property
    def pe_params(self) -> dict[str, Any]:
        """The ``[pe]`` table of this kind, without ``kind`` (e.g. {"act_format": ...})."""
        return {key: getattr(self, _PE_ATTRS[key]) for key in PE_KIND_SCHEMAS[self.pe_kind].keys}

    @property
    def act_bits(self) -> int:
        """Bits of one activation element on the ports (an integer, a format code or a word)."""
        return _ELEMENT_BITS[self.pe_kind](self)[0]

    @property
    def weight_bits(self) -> int:
        """Bits of one weight element on the ports (an integer, a format code, a word + mode
        or one bit-plane bit)."""
        return _ELEMENT_BITS[self.pe_kind](self)[1]

    @property
    def pe_summary(self) -> str:
        """One-line description of the PE arithmetic, e.g. "INT8xINT8 -> 32 bits" or
        "fp8_e4m3 x fp8_e4m3 -> fp32 (exact accumulation)"."""
        return _SUMMARIES[self.pe_kind](self)

    def to_dict(self) -> dict[str, Any]:
        """The nested, TOML-shaped dict; ``parse_config(cfg.to_dict()) == cfg``. The ``pe``
        table holds exactly the chosen kind's keys and ``sparsity`` only its non-default
        options, so int designs keep their original dict (and hash)."""
        sparsity = {"nm": self.nm}
        if self.encoding != "index":
            sparsity["encoding"] = self.encoding
        if self.runtime:
            sparsity["runtime"] = True
        table = {
            "name": self.name,
            "array": {"rows": self.rows, "cols": self.cols, "dataflow": self.dataflow},
            "sparsity": sparsity,
            "pe": {"kind": self.pe_kind, **self.pe_params},
            "synth": {"clock_mhz": self.clock_mhz},
        }
        if self.accelerator:
            table["accelerator"] = {key: getattr(self, key) for key in ACCELERATOR_DEFAULTS}
        return table

    def config_hash(self) -> str:
        """sha256 hex digest of the canonical (sorted-key, compact) JSON of :meth:`to_dict`."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=True, allow_nan=False)
        return hashlib.sha256(canon.encode("ascii")).hexdigest()


# Per kind: (activation element bits, weight element bits) on the ports.
_ELEMENT_BITS = {
    "int": lambda c: (c.act_width, c.weight_width),
    "fp": lambda c: (_FORMAT_BITS[c.act_format], _FORMAT_BITS[c.weight_format]),
    "scalable": lambda c: (8, 8 + 3),
    "mpgemm": lambda c: (_FORMAT_BITS[c.act_format], _FORMAT_BITS[c.weight_format]),
    "mx": lambda c: (_FORMAT_BITS[c.format],) * 2,
    "bitserial": lambda c: (c.act_width, 1),
    "posit": lambda c: (_FORMAT_BITS[c.format],) * 2,
}
# Per kind: the one-line description of its arithmetic.
_SUMMARIES = {
    "int": lambda c: f"INT{c.act_width}xINT{c.weight_width} -> {c.acc_width} bits",
    "fp": lambda c: (f"{c.act_format} x {c.weight_format} -> fp32 "
                     f"({c.accumulate} accumulation)"),
    "scalable": lambda c: f"INT8/INT4/INT2 lanes (INT16 composed) -> {c.acc_width} bits",
    "mpgemm": lambda c: (f"{c.weight_format} x {c.act_format}, scale per {c.group_size} -> "
                         f"INT{c.out_width} requantized"),
    "mx": lambda c: f"{c.format} blocks of {c.block_size} -> fp32",
    "bitserial": lambda c: (f"INT{c.act_width} x 1..{c.weight_width}-bit weights (bit-serial) "
                            f"-> {c.acc_width} bits"),
    "posit": lambda c: f"{c.format} x {c.format} -> quire -> {c.format}",
}


def _check_keys(source: str, prefix: str, table: Mapping, allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            where = "table" if isinstance(table[key], Mapping) else "key"
            field = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(source, field, f"unknown {where} {str(key)!r}",
                              ("keys " if prefix else "top-level keys ") + _choices(allowed))


def _known_kind(kind: Any) -> bool:
    return isinstance(kind, str) and kind in PE_KINDS


def _check_pe_keys(source: str, table: Mapping) -> None:
    """Unknown keys of the [pe] table: a key of no kind, or (when `kind` names a kind) a key of
    another kind."""
    kind = table.get("kind")
    if not _known_kind(kind):
        _check_keys(source, "pe", table, _TABLE_KEYS["pe"])
        return
    for key in table:
        if key in _TABLE_KEYS["pe"] and key not in _pe_keys(kind):
            raise _not_for_kind(source, key, kind)
        _check_keys(source, "pe", {key: table[key]}, _pe_keys(kind))


def _get(source: str, table: Mapping, prefix: str, key: str) -> Any:
    field = f"{prefix}.{key}" if prefix else key
    if key not in table:
        if field in _OPTIONAL_KEYS:
            return None
        raise _fail(source, field, "missing required key")
    return table[key]


def parse_config(mapping: Mapping[str, Any], source: str = "<config>") -> Config:
    """Validate a TOML-shaped mapping (as from ``tomllib`` or :meth:`Config.to_dict`)."""
    source = str(source)
    if not isinstance(mapping, Mapping):
        raise ConfigError(source, "(top level)", f"expected a table, got {_toml_type(mapping)}",
                          "a table with top-level keys " + _choices(_TOP_KEYS))
    _check_keys(source, "", mapping, _TOP_KEYS)

    name = _get(source, mapping, "", "name")

    tables: dict[str, Mapping] = {}
    for tname, keys in _TABLE_KEYS.items():
        if tname not in mapping and tname in _OPTIONAL_TABLES:
            tables[tname] = {}
            continue
        table = _get(source, mapping, "", tname)
        if not isinstance(table, Mapping):
            raise _fail(source, tname, f"expected a table, got {_toml_type(table)}")
        if tname == "pe":
            _check_pe_keys(source, table)
        else:
            _check_keys(source, tname, table, keys)
        tables[tname] = table

    # Fetch every key first so a missing key is reported before any value problem elsewhere.
    # [pe]: `kind` first; then the chosen kind's keys (all absent ones are None when the kind
    # itself is bad, which validation reports).
    values = {f"{t}.{k}": _get(source, tables[t], t, k)
              for t, keys in _TABLE_KEYS.items() if t != "pe" for k in keys}
    kind = _get(source, tables["pe"], "pe", "kind")
    for key in _TABLE_KEYS["pe"]:
        if key == "kind":
            values["pe.kind"] = kind
        elif _known_kind(kind) and key in PE_KIND_SCHEMAS[kind].keys:
            if key not in tables["pe"] and _kind_allowed(kind, key) is not None:
                raise ConfigError(source, f"pe.{key}", "missing required key",
                                  _kind_allowed(kind, key))
            values[f"pe.{key}"] = _get(source, tables["pe"], "pe", key)
        else:
            values[f"pe.{key}"] = tables["pe"].get(key)

    nm = values["sparsity.nm"]
    if not isinstance(nm, str):
        raise _fail(source, "sparsity.nm", f"expected a string, got {_toml_type(nm)}")
    match = _NM_RE.fullmatch(nm)
    if match is None:
        raise _fail(source, "sparsity.nm", f"malformed pattern {nm!r}, expected \"N:M\"")
    n, m = int(match.group(1)), int(match.group(2))

    clock = values["synth.clock_mhz"]
    encoding, runtime = values["sparsity.encoding"], values["sparsity.runtime"]
    accelerator = {key: (default if values[f"accelerator.{key}"] is None
                         else values[f"accelerator.{key}"])
                   for key, default in ACCELERATOR_DEFAULTS.items()}
    fields = dict(
        accelerator="accelerator" in mapping, **accelerator,
        encoding="index" if encoding is None else encoding,
        runtime=False if runtime is None else runtime,
        name=name,
        rows=values["array.rows"],
        cols=values["array.cols"],
        dataflow=values["array.dataflow"],
        n=n,
        m=m,
        clock_mhz=DEFAULT_CLOCK_MHZ if clock is None else clock,
        **{attr: values[f"pe.{key}"] for key, attr in _PE_ATTRS.items()},
    )
    # Validate with the real source before construction (Config re-validates with "<Config>").
    _validate(source, _Fields(**fields))
    return Config(**fields)


@dataclasses.dataclass
class _Fields:
    """Unvalidated field bag with Config's field names, for source-aware validation."""

    name: Any
    rows: Any
    cols: Any
    dataflow: Any
    n: Any
    m: Any
    pe_kind: Any
    act_width: Any
    weight_width: Any
    acc_width: Any
    overflow: Any
    clock_mhz: Any
    act_format: Any
    weight_format: Any
    accumulate: Any
    format: Any
    block_size: Any
    group_size: Any
    out_width: Any
    encoding: Any
    runtime: Any
    accelerator: Any
    stream_width: Any
    act_depth: Any
    weight_depth: Any
    param_depth: Any
    out_depth: Any


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate one design TOML file; errors name ``path`` as their source."""
    source = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(source, "file", f"config file not found: {source}") from None
    except IsADirectoryError:
        raise ConfigError(source, "file", f"config path is a directory: {source}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "file", f"TOML syntax error: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "file", f"not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise ConfigError(source, "file",
                          f"cannot read config file {source}: {exc.strerror or exc}") from None
    return parse_config(data, source=source)
