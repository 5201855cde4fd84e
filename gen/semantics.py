"""The exact arithmetic and interface rules of a generated design, as the manifest states them.

`semantics(config, pe)` returns an ordered ``{rule: statement}`` for the manifest's
``semantics`` section, from which the datasheet is written. Every statement restates what the
bit-exact golden model implements (named in each statement), with this design's parameters
filled in; the RTL is verified against those models bit for bit. Rules that every design shares
(reset, flags, pruned positions) come first, then the PE kind's, then the run-time pattern rules.
"""
from ..golden.fp_mac import FP32_QNAN
from ..golden.mx import BLOCK_SIZE, SCALE_NAN
from ..golden.nm import beat_span, pattern_name, runtime_patterns

RESET_CYCLES_MIN = 1

# Per array.dataflow: (what `latency_cycles` is measured from, the throughput rule, how
# `bad_groups` counts), as the datasheet states them.
DATAFLOW_TIMING = {
    "output_stationary": (
        "the transfer of a tile's `last` beat to `result.valid`",
        "one act beat and one weight beat per cycle; tiles are pipelined back to back and finished "
        "tiles wait in an output queue, so tiles of at least R+C-1 beats stream without a stall "
        "while the consumer keeps up",
        "as the top row's decoders see them (once per row tile that streams the group)"),
    "dot_product": (
        "the transfer of a tile's `last` beat to `result.valid`",
        "one act beat (one activation row's `rows` K-groups, broadcast to every column) and one "
        "weight beat (per column the same K-groups' compressed weights) per cycle; 1 x C tiles are "
        "pipelined back to back into an output queue as deep as the latency, so tiles of one beat "
        "stream without a stall while the consumer keeps up",
        "one per malformed K-group of a beat (once per tile row that streams it)"),
    "weight_stationary": (
        "the transfer of an act beat to its C partial sums at `result`",
        "one act beat (one activation row's K-block of `rows` K-groups, with the C partial sums it "
        "adds to) per cycle; a weight tile (rows K-groups x C columns) loads in one weight transfer "
        "into shadow registers while the tile before computes and is taken into use by the next "
        "`first` beat, after which the next tile can load (R-1)*hop+C cycles later (a partial "
        "sum takes hop cycles per PE row: 1, or 7 with FP32 partial sums); results wait in an "
        "output FIFO of latency + 1 beats, so a ready consumer never stalls the array",
        "one per malformed K-group of a tile, each time a `first` beat takes the tile into use"),
}


def _common(config, pe) -> dict:
    counting = DATAFLOW_TIMING[config.dataflow][2]
    return {
        "reset": (f"`rst` is synchronous and active high: hold it high for at least "
                  f"{RESET_CYCLES_MIN} rising edge of `clk` (every register that has a reset value "
                  f"is set in that edge; the data pipeline registers without one are only read under a "
                  f"valid bit that is reset). The verified testbenches hold it for 3 cycles. Reset "
                  f"clears `overflow`, `meta_error`, `bad_groups`, the output queue and every "
                  f"tile in flight."),
        "flags": ("`overflow` (a PE's arithmetic overflowed, or a PE saw malformed data such as an "
                  "MX `last` in mid-block) and `meta_error` (malformed sparsity metadata) are sticky "
                  f"until reset; `bad_groups` counts malformed (column, K-group) metadata groups "
                  f"{counting}. A malformed group is never silently computed as valid."),
        "pruned positions": ("only the N kept (activation, weight) pairs of each group are multiplied: "
                             "an activation at a pruned position (even a NaN or inf one) does not reach "
                             "the result."),
    }


def _int(config, pe) -> dict:
    width = config.acc_width   # the PE's MAC may be wider (weight-stationary: the group sum)
    groups = config.rows if config.dataflow == "dot_product" else 1
    step = ("beat (N/N' groups of the beat's pattern: `beat_span` K-elements)" if config.runtime
            else f"beat ({groups} K-groups of M = {config.m})" if groups > 1
            else f"beat (one K-group of M = {config.m})")
    policy = ("wraps (two's complement) to" if pe["overflow"] == "wrap" else "saturates (clamps) to")
    order = (f"per {step}, the N = {config.n * groups} products are summed exactly; then "
             f"acc = policy(acc + beat sum), beats in K order, from acc = 0 at the start "
             f"of each tile (`golden.gemm`" + (", beat_groups" if groups > 1 else "") + ").")
    if config.dataflow == "weight_stationary":
        order = (f"per K-group of M = {config.m}, the N = {config.n} products are summed exactly; "
                 f"then psum = policy(psum + group sum), down the column in K order (PE row r "
                 f"holds group r of the K-block), starting from the act beat's `psum` (the same "
                 f"sequence as `golden.gemm` when `psum` carries the K-blocks before).")
    return {
        "addition order": order,
        "overflow and saturation": (
            f"the policy `{pe['overflow']}` {policy} {width} signed bits after every beat, step by step "
            f"in K order"
            + ". Saturation (policy `saturate`) is likewise applied after every beat, in K order: a "
              "saturated result depends on the order of K, and a partial sum can saturate while the "
              "exact total is in range"
            + f". `overflow` is set (sticky) when the exact value of any update leaves the signed "
              f"{width}-bit range, for both policies."),
    }


def _fp(config, pe) -> dict:
    qnan = f"0x{FP32_QNAN:08X}"
    rules = {}
    if pe["accumulate"] == "fp32":
        lanes = pe["lanes"]
        rules["addition order and lanes"] = (
            f"IEEE binary32 additions with round-to-nearest-even, in this fixed order "
            f"(`golden/fp_mac.py`, `fp_mac_fp32`), with L = {lanes} lanes (`pe.lanes`: the FP32 "
            f"adder's loop is L cycles long, so it keeps L interleaved partial sums): "
            f"(1) each product p[b][i] = RNE_fp32(exact product) (exact except bf16 x bf16); "
            f"(2) the beat's sum s[b] = pairwise tree over the N = {config.n} lanes: neighbours (0,1), "
            f"(2,3), ... added level by level, an odd last one passing up unchanged; "
            f"(3) slots acc[j] = +0.0 for j < L, and beat b (b = 0, 1, ... in K order) is added into "
            f"acc[b mod L]; (4) result = (...((acc[0] + acc[1]) + acc[2]) ... + acc[L-1]). "
            f"Floating-point addition is not associative: another order gives other bits.")
        rules["rounding"] = ("every product and every addition is rounded to FP32 with "
                             "round-to-nearest-even, with gradual underflow; overflow rounds to +-inf.")
        rules["zero sign"] = ("an exact zero sum is +0, even when every product is -0 (the slots start "
                              "at +0.0, and RNE gives x + (-x) = +0).")
        rules["overflow flag"] = ("`overflow` is set when a product or an addition raises IEEE overflow "
                                  "(finite operands, infinite result) or invalid (inf x 0, inf + -inf).")
        if config.dataflow == "weight_stationary":
            rules["partial sums"] = (
                "weight-stationary: a beat of the order above is one K-group (each PE's N "
                "products), L = 1: the act beat's and the result's `psum[c]` are the FP32 sum so "
                "far (`bits`, all zero = +0.0 for the first K-block) and its sticky `flag`; each "
                "PE adds its group's sum in one RNE addition (6 cycles: partial sums move down a "
                "row every 7 cycles); `value[c]` is the sum; `overflow` follows the `flag` of "
                "beats marked `final`.")
    else:
        rules["addition order and lanes"] = (
            f"exact: every product is exact and summed exactly (per beat the N products, then into "
            f"the accumulator) in a {pe['acc_bits']}-bit two's-complement fixed-point accumulator whose "
            f"LSB is the smallest product's weight; no order dependence (`golden/fp_mac.py`, "
            f"`fp_mac_exact`). A partial sum outside that range poisons the tile: NaN and `overflow`.")
        rules["rounding"] = ("the exact sum is rounded once to FP32, round-to-nearest-even, gradual "
                             "underflow, overflow to +-inf.")
        rules["zero sign"] = "an exact zero sum is +0, even from -0 products."
        rules["overflow flag"] = ("`overflow` is set for inf x 0, +inf and -inf products meeting, the "
                                  "accumulator bound exceeded, or a finite sum that rounds to +-inf.")
        if config.dataflow == "weight_stationary":
            rules["partial sums"] = (
                f"weight-stationary: the act beat's `psum[c]` and the result's `psum[c]` are the exact "
                f"sum so far (`rtl.mac_fp.ExactSum`: `value`, {pe['acc_bits']}-bit fixed point with "
                f"the LSB above; `nan`, `invalid`, `pinf`, `ninf`: products of those classes met; "
                f"`bound`: a partial sum left the range), all zero for the first K-block; each PE adds "
                f"its group's exact sum. The result's `value[c]` is `psum[c]` rounded as above "
                f"(`golden.fp_mac.exact_result`); `overflow` follows only beats marked `final` (the "
                f"last K-block: an earlier partial sum may round to +-inf and later come back).")
    rules["NaN"] = (f"every NaN result is the quiet NaN {qnan}. NaN operands propagate quietly "
                    f"(no flag); inf x 0 and inf + (-inf) give NaN and set `overflow`.")
    with_inf = [f for f in (pe["act_format"], pe["weight_format"]) if f in ("bf16", "fp8_e5m2")]
    rules["infinity"] = (
        ("formats with infinities here: " + ", ".join(sorted(set(with_inf))) + ". An inf operand "
         "times a non-zero finite gives a +-inf product, which propagates to an inf result; that "
         "alone does not set `overflow` (only an inf made from finite operands, or an invalid "
         "operation, does). ") if with_inf else
        "neither operand format has infinities (fp8_e4m3: NaN = S.1111.111, no inf; FP6/FP4: no "
        "inf or NaN). ") + "A finite result too large for FP32 is +-inf and sets `overflow`."
    return rules


def _mx(config, pe) -> dict:
    beats = pe["beats_per_block"]
    rules = {
        "blocks and scale sampling": (
            f"a block is {BLOCK_SIZE} K elements = {beats} beats; the E8M0 scales (act `side[r]` per "
            f"row, weight `side` per column) are sampled on the block's LAST beat only. A tile whose "
            f"`last` comes in mid-block is malformed: result NaN and `overflow` (`golden.mx.mx_mac`)."),
        "addition order and lanes": (
            f"per block, the kept products are summed exactly, times 2^(ea + eb - 254), and rounded "
            f"ONCE to FP32 (RNE) (`golden.mx.mx_block_dot`); then blocks are added in FP32 RNE in K "
            f"order into L = {pe['lanes']} partial sums that start at -0.0 (so a one-block tile is its "
            f"block's value bit for bit), summed at the end in slot order (`golden.mx.mx_tile`). Each "
            f"block is rounded before blocks are added, so a result can differ by 1 ulp from one "
            f"rounding of the whole dot product."),
        "rounding": "round-to-nearest-even to FP32 per block and per addition; gradual underflow.",
        "NaN": (f"a scale of 0x{SCALE_NAN:02X} makes its block NaN; every NaN result is the quiet NaN "
                f"0x{FP32_QNAN:08X}; a +inf block plus a -inf block gives NaN (and sets `overflow`)."),
        "infinity": ("element infinities (fp8_e5m2) propagate through the scale (inf times a scale "
                     "stays inf); inf x 0 inside a block is NaN."),
        "zero sign": "an exact zero block sum is +0; a tile of zero blocks is +0.",
        "overflow flag": ("`overflow` is set on a block overflow (its finite scaled sum rounds to "
                          "+-inf), an invalid operation inside a block (inf x 0, +inf and -inf products), "
                          "an FP32 addition overflow or invalid, and a `last` in mid-block."),
    }
    if config.dataflow == "weight_stationary":
        rules["blocks and scale sampling"] = (
            f"weight-stationary: a K-block of rows*M = {config.rows * config.m} elements lies in "
            f"one block; the act beat's `side` is its row's scale and the weight tile's `side[c]` "
            f"its column's; a beat marked `block_last` (its K-block ends a block) closes the block "
            f"with those scales after the bottom row.")
        rules["partial sums"] = (
            "the act beat's `psum[c]` and the result's `psum[c]` hold `block` (the current "
            "block's exact sum: `value` fixed point with the special classes, "
            "`rtl.mac_fp.ExactSum`), `sum` (FP32 sum of the blocks before, read as -0.0 until "
            "`started`) and `flag` (sticky); all zero for the first K-block. Blocks add in K "
            "order, one lane (`golden.mx.mx_tile(lanes=1)`); `value[c]` is `sum` after the "
            "beat; `overflow` follows the `flag` of beats marked `final`.")
    return rules


def _posit(config, pe) -> dict:
    q = pe["quire_bits"]
    rules = {
        "addition order": ("per beat the N products are summed exactly, then added exactly to a "
                           f"{q}-bit quire (SoftPosit's layout, LSB 2^{pe['quire_lsb_exp']}); the tile's "
                           "sum is rounded once (`golden/posit_mac.py`)."),
        "rounding": ("the exact sum is rounded once to the posit format: nearest, ties to the even "
                     "code, never to 0 or NaR unless the sum is exactly 0."),
        "NaN": "any NaR operand makes the result NaR, without setting `overflow`.",
        "overflow flag": (f"if after any beat the partial sum reaches 2^{q - 1} LSBs in magnitude, the "
                          f"quire's carry-guard bits have overflowed: the result is NaR and `overflow` "
                          f"is set. This differs from SoftPosit, whose quire wraps silently."),
    }
    if config.dataflow == "weight_stationary":
        rules["partial sums"] = (
            f"weight-stationary: the act beat's and the result's `psum[c]` are the quire so far "
            f"(`value`, {q} bits, wrapping; `nar`; `bound`: a partial sum reached the bound), all "
            f"zero for the first K-block; each PE adds its group's exact sum; `value[c]` is the "
            f"quire rounded to the format (NaR when `nar` or `bound`); `overflow` follows "
            f"`bound` on beats marked `final`.")
    return rules


def _scalable(config, pe) -> dict:
    return {
        "addition order": ("per beat each lane's sub-word products (by its 3-bit mode: 1 INT8, 2 INT4, "
                           "4 INT2, one piece of an INT16 x INT16 product, or off) are summed exactly, "
                           "then acc = policy(acc + beat sum), beats in K order (`golden.scalable`)."),
        "overflow and saturation": _int(config, {**pe, "acc_width": pe["acc_width"]})["overflow and saturation"],
    }


def _mpgemm(config, pe) -> dict:
    rules = {
        "addition order": (f"per quantization group of {pe['group_size']} K: s = sum w*a and t = sum a "
                           f"over the kept pairs, r = scale * (s - zero * t) exactly; the tile's sum of r "
                           f"is requantized (`golden.dot.mpgemm_gemm`)."),
        "rounding": (f"round(acc * mult / 2^shift), {pe['rounding']}, saturating to {pe['out_width']} "
                     f"signed bits."),
        "overflow flag": ("`overflow` is set when the side values (scale, zero) change within a "
                          "quantization group: malformed data, flagged, not silently computed."),
    }
    if config.dataflow == "weight_stationary":
        rules["partial sums"] = (
            "weight-stationary: `psum[c]` holds the current group's `s` (sum w*a) and `t` (sum a), "
            "the accumulator `acc` of the groups before and its `flag`; a beat marked `block_last` "
            "(its K-block ends a quantization group) closes the group with the weight tile's "
            "`side[c]` scale and zero point (the K-block's: one tile per K-block, so no change "
            "within it to flag); `value[c]` is `acc` requantized with the tile's mult and shift, "
            "the output on beats marked `final`, whose flag (acc overflow or saturation) raises "
            "`overflow`.")
    return rules


def _bitserial(config, pe) -> dict:
    rules = {
        "addition order": ("one weight bit-plane per beat: the beat adds +-2^plane * sum a*bit "
                           "(negated on the sign plane), then acc = policy(acc + beat sum), beats in "
                           "order (`golden/bitserial.py`)."),
        "overflow and saturation": _int(config, pe)["overflow and saturation"],
    }
    if config.dataflow != "output_stationary":
        rules["planes per beat"] = (
            "a beat (dot-product) or weight tile (weight-stationary) is one bit-plane of `rows` "
            "K-groups, its plane and msb in the weight `side`; a K-block's planes follow each "
            "other (`golden.bitserial.plane_beats(block=rows)`). "
            + ("The MAC checks each column's plane sequence as in the output-stationary array."
               if config.dataflow == "dot_product" else
               "Weight-stationary: every tile is computed as its side says (each PE adds its "
               "group's signed, shifted sum to the partial sum), so any sequence of tiles has one "
               "meaning; there is no sequence to check."))
    return rules


KIND_RULES = {"int": _int, "fp": _fp, "mx": _mx, "posit": _posit, "scalable": _scalable,
              "mpgemm": _mpgemm, "bitserial": _bitserial}


def runtime_pattern_table(config) -> list[dict]:
    """Per pattern id: name, K-elements per beat and the index convention of the weights."""
    rows = []
    for pid, (np_, mp) in enumerate(runtime_patterns(config.n, config.m)):
        name = pattern_name((np_, mp))
        if np_ == mp:
            convention = (f"one group of N = {config.n} elements; indices 0..{config.n - 1} (lane i has "
                          f"index i; sending dense as {config.n} groups of one counts every beat as "
                          f"malformed)")
        else:
            convention = (f"{config.n // np_} group(s) of {mp} per beat; multiplier i belongs to group "
                          f"i // {np_} and reads block i of the act window at its group-relative "
                          f"index 0..{mp - 1}; indices strictly increasing within a group")
        rows.append({"id": pid, "pattern": name, "beat_span": beat_span((np_, mp), config.n),
                     "indices": convention})
    return rows


def semantics(config, pe) -> dict:
    """The manifest's `semantics`: ``{rule: statement}`` (see the module docstring)."""
    rules = _common(config, pe)
    if pe is not None:
        rules |= KIND_RULES[config.pe_kind](config, pe)
    if config.runtime:
        rules["run-time patterns"] = (
            "the pattern id of a column's weight beat is the position of the pattern in "
            "`parameters.patterns`; an unknown id, an index >= M' and unsorted or repeated indices "
            "are counted in `bad_groups` and set `meta_error`.")
    if config.accelerator:
        rules |= _accelerator(config)
    return rules


def _accelerator(config) -> dict:
    """The accelerator's per-kind output stage and its pattern rule (rtl.isa GEMM;
    golden.accel.Executor is the model)."""
    if config.pe_kind == "int":
        stage = ("per result: x = acc + bias (exact); y = clamp(floor((x * mult + 2^(shift-1)) / "
                 f"2^shift)) to {config.act_width} bits (round half up; shift 0 adds nothing), or "
                 f"with `raw` clamp(x) to {config.acc_width} bits; then ReLU if asked "
                 "(golden.accel.requantize). `to_act` writes y into ACT for the next GEMM.")
    else:
        stage = ("pass-through: each OUT word is the FP32 result's bits (bias, mult, shift, raw "
                 "and relu are ignored; STORE with wide = 1 sends the 32-bit words); `to_act` is "
                 "refused (SHAPE): a host converts FP32 results to the next layer's format.")
    rules = {"accelerator output stage": stage}
    if config.runtime:
        rules["accelerator patterns"] = (
            "a GEMM command's `pattern` operand is the pattern id for all its beats (an id "
            "outside the table is refused with PATTERN); WEIGHT words hold N values + N indices "
            "per column, k/S words per column panel (S = the pattern's beat span); ACT words "
            f"hold K-groups of N*Mmax = {config.n * config.m} elements, the feeder cuts each "
            "beat's slice and builds its activation window.")
    return rules
