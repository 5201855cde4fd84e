"""The accelerator's command set, declared once: the RTL controller, the golden executor
(golden.accel), the cycle model, the host driver and the model compiler all import this module.
It depends on Amaranth and on golden.nm's pattern table (as rtl.decoder does), nothing else.

A command is one 128-bit beat of the `cmd` stream (`Command`, LSB first). Every command names one
unit (`UNIT_OF`): LOAD the load unit, GEMM the execute unit, STORE the store unit. Commands are
dispatched in order, one at a time; a command is dispatched once its unit is free (one command in
flight per unit), so commands of different units overlap. `wait = 1` holds a command until every
earlier command has finished (a barrier, as VTA's dependency tokens in their simplest form): a
program sets it wherever a command reads what a still-running one writes (golden.accel.hazards
finds the places it is missing).

Before dispatch a command is checked; a bad one is refused: nothing runs, no buffer is touched,
`cmd_error` (sticky) rises and `error_code` takes its `Error` code (the first failing check, in the
order documented per command); the next command runs normally. Checks use the design's buffer
depths (`AcceleratorShape`).

Buffers (`Buffer`), each a block RAM of words (layouts in golden.accel and the manifest):
  ACT    activation words: R rows x G elements of one K-group, G = `AcceleratorShape.k_group`
         (M; on a run-time design N*Mmax, the array's activation window);
  WEIGHT weight words: one array weight beat (C columns x (N values + metadata) of one K-group,
         or on a run-time design of one beat of the GEMM's pattern: N values + N indices);
  PARAM  output-stage words (`Requant`): bias, multiplier and shift of one output column;
  OUT    result words: one output element (acc_width bits, signed) each.

Opcodes:
  NOP   does nothing (a `wait` on it is a pure barrier).
  LOAD  reads `count` words of `buffer` (ACT, WEIGHT or PARAM) starting at word `addr` from the
        data-in stream: the words' bits are packed back to back, LSB first, into
        ceil(count * word_bits / stream_width) stream words (the padding bits of the last one
        are ignored). Checks: buffer (BAD_BUFFER), count >= 1 (SHAPE), addr + count <= depth
        (<buffer>_RANGE).
  GEMM  C = A x W for A (m x k) in ACT at `act_addr` (ceil(m/R) row panels of k/G words each,
        panel after panel) and W (k x n) in WEIGHT at `weight_addr` (ceil(n/C) column panels of
        k/S words each, S = `AcceleratorShape.span(pattern)`: M, or N*M'/N' for pattern
        N':M' of a run-time design), tiled row panel by row panel, column panel by column
        panel, each tile streaming its k/S beats through the array; panels are read from the
        buffers as often as tiles need them (loaded once). `pattern` (an id of
        `AcceleratorShape.patterns`; 0 on a fixed design) selects the run-time pattern of every
        beat: the feeder cuts each beat's S elements out of the ACT word and places them in the
        activation window (golden.nm.act_windows), and sends the id to the decoders. Every
        result element (r, c), r < m, c < n, goes through the output stage with column c's
        PARAM word at `param_addr + c`:
          x = acc + bias (exact)
          raw = 0: y = clamp(floor((x * mult + 2^(shift-1)) / 2^shift)) to act_width bits
                   (round half up; shift = 0: y = clamp(x * mult))
          raw = 1: y = clamp(x) to acc_width bits
          relu = 1: y = max(y, 0)
        Kinds "fp", "mx": the output stage is a pass-through, y = the FP32 result bits (bias, mult,
        shift, raw and relu are ignored; STORE with wide = 1 sends them), and to_act is refused.
        to_act = 0: y goes to OUT word `dst_addr + r * n + c` (row-major).
        to_act = 1 (chaining; raw must be 0): y goes to the ACT buffer in the act-panel layout
        of the (ceil(m/R)*R x ceil(n/C)*C) zero-padded result at `dst_addr`: row panel p, K-group
        g at word dst_addr + p*(ceil(n/C)*C/G) + g, lane (r mod R)*G + c mod G; elements r >= m
        or c >= n of the last row/column tiles are written as zero, so the next GEMM reads it
        with k = ceil(n/C)*C.
        Checks, in order: m, k, n >= 1 (SHAPE); pattern in the table (PATTERN); k mod G == 0
        (K_GROUP; mx: also k mod block_size); to_act with raw, on kind "fp" or "mx", or with
        ceil(n/C)*C not a multiple of G (SHAPE);
        act_addr + ceil(m/R)*k/G <= ACT depth (ACT_RANGE); weight_addr + ceil(n/C)*k/S <= WEIGHT
        depth (WEIGHT_RANGE); param_addr + n <= PARAM depth (PARAM_RANGE); param_addr a multiple
        of `param_align` (C when C is a power of two, else 1: a tile's C PARAM words are then one
        row of the C PARAM banks, read without a lane rotation) (PARAM_ALIGN); destination: OUT
        dst_addr + m*n <= OUT depth (OUT_RANGE), ACT dst_addr + ceil(m/R)*ceil(n/C)*C/G <= ACT
        depth and the chained words not overlapping the GEMM's own ACT input (ACT_RANGE: the
        drain writes while the feeder still reads).
  STORE sends `count` OUT words from `addr` on the data-out stream, elements of `wide ?
        acc_width : act_width` bits (two's complement, truncated), stream_width // element_bits
        per stream word, LSB first; `tlast` marks the STORE's last stream word. Checks:
        count >= 1 (SHAPE), addr + count <= OUT depth (OUT_RANGE).
Unknown opcodes are refused with BAD_OPCODE.
"""
from dataclasses import dataclass

from amaranth import signed, unsigned
from amaranth.lib import data, enum

from ..golden.nm import beat_span, runtime_index_bits, runtime_patterns

COMMAND_BITS = 128
ADDR_BITS = 16
SIZE_BITS = 16
FP_RESULT_BITS = 32   # kinds "fp", "mx": an OUT word is the FP32 result's bits
MX_SCALE_BITS = 8     # kind "mx": an E8M0 block scale per ACT row and WEIGHT column of a word
PATTERN_BITS = 4      # GEMM `pattern`: an id of the design's pattern table (AcceleratorShape.patterns)


class Opcode(enum.Enum, shape=4):
    NOP = 0
    LOAD = 1
    GEMM = 2
    STORE = 3


class Buffer(enum.Enum, shape=2):
    ACT = 0
    WEIGHT = 1
    PARAM = 2
    OUT = 3      # written by GEMM, read by STORE; not a LOAD target


class Unit(enum.Enum, shape=2):
    """The unit that executes a command (NOP: none)."""
    NONE = 0
    LOAD = 1
    EXECUTE = 2
    STORE = 3


UNIT_OF = {Opcode.NOP: Unit.NONE, Opcode.LOAD: Unit.LOAD, Opcode.GEMM: Unit.EXECUTE,
           Opcode.STORE: Unit.STORE}


class Error(enum.Enum, shape=4):
    """`error_code` of a refused command (0: none since reset)."""
    NONE = 0
    BAD_OPCODE = 1
    BAD_BUFFER = 2
    SHAPE = 3          # a zero size, or a to_act GEMM the chaining layout cannot hold
    K_GROUP = 4        # GEMM k not a multiple of the group size M
    ACT_RANGE = 5
    WEIGHT_RANGE = 6
    PARAM_RANGE = 7
    OUT_RANGE = 8
    PATTERN = 9        # GEMM pattern id outside the design's pattern table
    PARAM_ALIGN = 10   # GEMM param_addr not a multiple of AcceleratorShape.param_align


RANGE_ERROR = {Buffer.ACT: Error.ACT_RANGE, Buffer.WEIGHT: Error.WEIGHT_RANGE,
               Buffer.PARAM: Error.PARAM_RANGE, Buffer.OUT: Error.OUT_RANGE}


class LoadOperands(data.Struct):
    buffer: Buffer
    addr: ADDR_BITS
    count: SIZE_BITS


class StoreOperands(data.Struct):
    addr: ADDR_BITS
    count: SIZE_BITS
    wide: 1


class GemmOperands(data.Struct):
    act_addr: ADDR_BITS
    weight_addr: ADDR_BITS
    param_addr: ADDR_BITS
    dst_addr: ADDR_BITS
    m: SIZE_BITS
    k: SIZE_BITS
    n: SIZE_BITS
    relu: 1
    raw: 1
    to_act: 1
    pattern: PATTERN_BITS


class Operands(data.Union):
    load: LoadOperands
    store: StoreOperands
    gemm: GemmOperands


class Command(data.Struct):
    """One command beat: opcode, barrier flag, the opcode's operands, zero padding to 128 bits."""
    opcode: Opcode
    wait: 1
    operands: Operands
    reserved: COMMAND_BITS - 4 - 1 - 115 - PATTERN_BITS


PARAM_BIAS_BITS = 32
PARAM_MULT_BITS = 16
PARAM_SHIFT_BITS = 6


class Requant(data.Struct):
    """One PARAM word: the output stage's parameters of one output column (bias added to the
    accumulator, unsigned multiplier, right shift with rounding half up), padded to 64 bits so
    the load unit's gearbox cuts it from the stream at a fixed position."""
    bias: signed(PARAM_BIAS_BITS)
    mult: unsigned(PARAM_MULT_BITS)
    shift: unsigned(PARAM_SHIFT_BITS)
    reserved: 64 - PARAM_BIAS_BITS - PARAM_MULT_BITS - PARAM_SHIFT_BITS


assert Command.as_shape().size == COMMAND_BITS


WS_ACC_ROWS = 128   # weight-stationary: rows of partial sums the execute unit keeps per block


@dataclass(frozen=True)
class AcceleratorShape:
    """The facts of one generated accelerator that commands, memory images and the cycle model
    depend on (the manifest's `accelerator.shape`)."""
    rows: int
    cols: int
    n: int
    m: int
    encoding: str            # "index" or "bitmap" (no metadata when n == m)
    act_width: int
    weight_width: int
    acc_width: int
    overflow: str            # "wrap" or "saturate"
    stream_width: int
    act_depth: int
    weight_depth: int
    param_depth: int
    out_depth: int
    runtime: bool = False    # run-time patterns: n:m is N multipliers : Mmax, `patterns` the table
    kind: str = "int"        # pe.kind: "int" (output stage); "fp", "mx" (FP32 results pass through)
    act_format: str | None = None     # kinds "fp", "mx": the element formats (golden.formats /
    weight_format: str | None = None  #   golden.mx names), act_width/weight_width their code
    accumulate: str | None = None     #   bits, acc_width 32 (FP32 result bits); fp: accumulation
    fp_lanes: int | None = None       # fp32 accumulation / mx: interleaved FP32 partial sums
    fp_acc_bits: int | None = None    # fp exact accumulation: accumulator bits (rtl.mac_fp)
    block_size: int | None = None     # mx: K elements per E8M0 scale (k is a multiple of it)
    beat_groups: int = 1     # K-groups of M per array beat and column (dot-product: its rows)
    dataflow: str = "output_stationary"   # config array.dataflow
    acc_rows: int = 0        # weight-stationary: GEMM rows per block (its accumulator's depth)
    ws_hop: int = 1          # weight-stationary: cycles a partial sum takes per PE row

    @classmethod
    def from_config(cls, config):
        """From a gen.config.Config with an [accelerator] table. Dot-product and
        weight-stationary arrays compute 1 x cols tiles (`rows` 1) from beats of config.rows
        K-groups (`beat_groups`): one activation row's K-block per beat."""
        dot = config.dataflow != "output_stationary"
        common = (1 if dot else config.rows, config.cols, config.n, config.m, config.encoding)
        groups = {"beat_groups": config.rows, "dataflow": config.dataflow} if dot else {}
        if config.dataflow == "weight_stationary":
            groups["acc_rows"] = WS_ACC_ROWS
        depths = (config.stream_width, config.act_depth, config.weight_depth, config.param_depth,
                  config.out_depth, bool(config.runtime))
        if config.pe_kind == "fp":
            from .mac_fp import FpMac
            from .ws_partials import Fp32PartialSum
            mac = FpMac(config.n * config.rows if dot else config.n, config.act_format,
                        config.weight_format, config.accumulate)
            lanes = mac.lanes
            if config.dataflow == "weight_stationary" and config.accumulate == "fp32":
                groups["ws_hop"], lanes = Fp32PartialSum.hop, 1   # K-groups in K order
            return cls(*common, config.act_bits, config.weight_bits, FP_RESULT_BITS, "flag",
                       *depths, "fp", config.act_format, config.weight_format,
                       config.accumulate, lanes, mac.acc_bits, **groups)
        if config.pe_kind == "mx":
            from .mac_mx import mx_lanes
            beat_m = config.m * config.rows if dot else config.m
            lanes = 1 if config.dataflow == "weight_stationary" else mx_lanes(beat_m)
            return cls(*common, config.act_bits, config.weight_bits, FP_RESULT_BITS, "flag",
                       *depths, "mx", config.format, config.format, None, lanes,
                       None, config.block_size, **groups)
        return cls(*common, config.act_width, config.weight_width, config.acc_width,
                   config.overflow, *depths, **groups)

    @property
    def dense(self):
        return self.n == self.m and not self.runtime

    def weight_passes(self, m):
        """How often a GEMM of m rows streams each weight group through the array: once per row
        panel, or on a weight-stationary array once per block of acc_rows rows."""
        return _ceil(m, self.acc_rows) if self.acc_rows else _ceil(m, self.rows)

    @property
    def saturation_groups(self):
        """K-groups summed exactly before each accumulator update: a dot-product PE's beat;
        output- and weight-stationary arrays update per K-group."""
        return self.beat_groups if self.dataflow == "dot_product" else 1

    @property
    def param_align(self):
        """A GEMM's param_addr must be a multiple of this: C when C is a power of two (the PARAM
        buffer's banks, so a tile's C words are one bank row), else 1."""
        return self.cols if self.cols & (self.cols - 1) == 0 else 1

    @property
    def patterns(self):
        """The GEMM `pattern` ids' table: (N', M') per id. A fixed design has one, (N, M); a
        run-time design golden.nm.runtime_patterns(N, Mmax) (id 0 dense)."""
        return runtime_patterns(self.n, self.m) if self.runtime else ((self.n, self.m),)

    @property
    def k_group(self):
        """K elements per row of one ACT word (a GEMM's k is a multiple of it): a beat's M *
        beat_groups, or on a run-time design the widest beat span N*Mmax (the array's
        activation window), so every pattern's beats cut whole out of ACT words."""
        return self.n * self.m * self.beat_groups if self.runtime else self.beat_m

    def span(self, pattern=0):
        """K elements one array beat of pattern id `pattern` covers (one WEIGHT word per column
        panel): M * beat_groups, or N*M'/N' on a run-time design."""
        if self.runtime:
            return beat_span(self.patterns[pattern], self.n) * self.beat_groups
        return self.beat_m

    @property
    def beat_n(self):
        """Weight values per column and beat (multipliers per PE): N * beat_groups."""
        return self.n * self.beat_groups

    @property
    def beat_m(self):
        """Activations per row and beat of a fixed design: M * beat_groups."""
        return self.m * self.beat_groups

    @property
    def metadata_bits(self):
        """Metadata bits of one column's K-group (or beat): N indices of ceil(log2 M) bits, an
        M-bit bitmap, or none (dense); as rtl.decoder lays them out after the N values. A
        run-time design stores N indices of ceil(log2 Mmax) bits (its pattern id comes from the
        GEMM command, not from the buffer)."""
        if self.dense:
            return 0
        if self.runtime:
            return self.beat_groups * self.n * runtime_index_bits(self.m)
        return self.beat_groups * (self.m if self.encoding == "bitmap"
                                   else self.n * (self.m - 1).bit_length())

    @property
    def side_bits(self):
        """Bits of the per-row (ACT) and per-column (WEIGHT) side value of a word: the E8M0
        block scale on kind "mx", else none."""
        return MX_SCALE_BITS if self.kind == "mx" else 0

    @property
    def column_bits(self):
        """Bits of one column in a WEIGHT word: N * beat_groups values, the metadata (each
        group's in turn), the side value."""
        return self.beat_n * self.weight_width + self.metadata_bits + self.side_bits

    @property
    def act_data_bits(self):
        """Bits of the elements of one ACT word: R rows x k_group, element (r, j) at lane
        r*k_group + j; the R side values (mx scales) follow them."""
        return self.rows * self.k_group * self.act_width

    @property
    def act_word_bits(self):
        """Bits of one ACT word: the elements, then R side values (row r's at r*side_bits)."""
        return self.act_data_bits + self.rows * self.side_bits

    @property
    def weight_word_bits(self):
        """Bits of one WEIGHT word: C columns, column c at bit c * column_bits."""
        return self.cols * self.column_bits

    def depth(self, buffer):
        return {Buffer.ACT: self.act_depth, Buffer.WEIGHT: self.weight_depth,
                Buffer.PARAM: self.param_depth, Buffer.OUT: self.out_depth}[Buffer(buffer)]

    def word_bits(self, buffer):
        return {Buffer.ACT: self.act_word_bits, Buffer.WEIGHT: self.weight_word_bits,
                Buffer.PARAM: Requant.as_shape().size, Buffer.OUT: self.acc_width}[Buffer(buffer)]

    def stream_words(self, buffer, count):
        """Data-in stream words that carry `count` words of `buffer` (LOAD)."""
        return _ceil(count * self.word_bits(buffer), self.stream_width)

    def store_element_bits(self, wide):
        return self.acc_width if wide else self.act_width

    def store_stream_words(self, count, wide):
        """Data-out stream words of a STORE of `count` elements."""
        return _ceil(count, self.stream_width // self.store_element_bits(wide))

    def to_dict(self):
        return dict(self.__dict__)


def _ceil(a, b):
    return -(-a // b)


def load(buffer, addr, count, wait=False):
    """A LOAD command as a dict (see `encode`)."""
    return {"opcode": Opcode.LOAD, "wait": int(wait),
            "operands": {"load": {"buffer": Buffer(buffer), "addr": addr, "count": count}}}


def store(addr, count, wide=False, wait=False):
    return {"opcode": Opcode.STORE, "wait": int(wait),
            "operands": {"store": {"addr": addr, "count": count, "wide": int(wide)}}}


def gemm(act_addr, weight_addr, param_addr, dst_addr, m, k, n, relu=False, raw=False,
         to_act=False, wait=False, pattern=0):
    """A GEMM command; `pattern` is an id of AcceleratorShape.patterns (0 on a fixed design)."""
    return {"opcode": Opcode.GEMM, "wait": int(wait),
            "operands": {"gemm": {"act_addr": act_addr, "weight_addr": weight_addr,
                                  "param_addr": param_addr, "dst_addr": dst_addr, "m": m, "k": k,
                                  "n": n, "relu": int(relu), "raw": int(raw),
                                  "to_act": int(to_act), "pattern": int(pattern)}}}


def nop(wait=False):
    return {"opcode": Opcode.NOP, "wait": int(wait), "operands": {"load": {}}}


def encode(command) -> int:
    """The 128-bit command word of a command dict (from `load`, `store`, `gemm`, `nop`); a raw
    int passes through (e.g. a deliberately bad opcode)."""
    if isinstance(command, int):
        return command
    opcode = command["opcode"]
    init = {"opcode": opcode, "wait": command["wait"], "operands": command["operands"]}
    return Command.const(init).as_value().value


def _plain(value) -> int:
    return value.value if isinstance(value, enum.Enum) else int(value)


def decode(word: int) -> dict:
    """The fields of a command word: opcode (an Opcode, or the raw int when unknown), wait, and
    every operand view (load, store, gemm) as plain ints."""
    mask = (1 << COMMAND_BITS) - 1
    view = Command.from_bits(word & mask)
    raw_opcode = word & 0xF
    try:
        opcode = Opcode(raw_opcode)
    except ValueError:
        opcode = raw_opcode
    fields = {"opcode": opcode, "wait": int(view.wait)}
    for name, struct in (("load", LoadOperands), ("store", StoreOperands), ("gemm", GemmOperands)):
        sub = getattr(view.operands, name)
        fields[name] = {f: _plain(getattr(sub, f)) for f, _ in struct.as_shape()}
    return fields


def check(fields: dict, shape: AcceleratorShape) -> Error:
    """The error code the controller gives a decoded command (Error.NONE: it runs). The checks
    and their order are the ones the module docstring lists per opcode."""
    opcode = fields["opcode"]
    if not isinstance(opcode, Opcode):
        return Error.BAD_OPCODE
    if opcode == Opcode.LOAD:
        f = fields["load"]
        if f["buffer"] not in (Buffer.ACT.value, Buffer.WEIGHT.value, Buffer.PARAM.value):
            return Error.BAD_BUFFER
        if f["count"] == 0:
            return Error.SHAPE
        buffer = Buffer(f["buffer"])
        if f["addr"] + f["count"] > shape.depth(buffer):
            return RANGE_ERROR[buffer]
    elif opcode == Opcode.STORE:
        f = fields["store"]
        if f["count"] == 0:
            return Error.SHAPE
        if f["addr"] + f["count"] > shape.out_depth:
            return Error.OUT_RANGE
    elif opcode == Opcode.GEMM:
        f = fields["gemm"]
        if min(f["m"], f["k"], f["n"]) == 0:
            return Error.SHAPE
        if f["pattern"] >= len(shape.patterns):
            return Error.PATTERN
        if f["k"] % shape.k_group or (shape.block_size and f["k"] % shape.block_size):
            return Error.K_GROUP
        row_panels, col_panels = _ceil(f["m"], shape.rows), _ceil(f["n"], shape.cols)
        if f["to_act"] and (f["raw"] or shape.kind != "int"
                            or (col_panels * shape.cols) % shape.k_group):
            return Error.SHAPE
        if f["act_addr"] + row_panels * (f["k"] // shape.k_group) > shape.act_depth:
            return Error.ACT_RANGE
        if f["weight_addr"] + col_panels * (f["k"] // shape.span(f["pattern"])) > shape.weight_depth:
            return Error.WEIGHT_RANGE
        if f["param_addr"] + f["n"] > shape.param_depth:
            return Error.PARAM_RANGE
        if f["param_addr"] % shape.param_align:
            return Error.PARAM_ALIGN
        if f["to_act"]:
            chain_end = f["dst_addr"] + row_panels * (col_panels * shape.cols // shape.k_group)
            act_end = f["act_addr"] + row_panels * (f["k"] // shape.k_group)
            if chain_end > shape.act_depth:
                return Error.ACT_RANGE
            if f["dst_addr"] < act_end and f["act_addr"] < chain_end:   # overwrites its input
                return Error.ACT_RANGE
        elif f["dst_addr"] + f["m"] * f["n"] > shape.out_depth:
            return Error.OUT_RANGE
    return Error.NONE
