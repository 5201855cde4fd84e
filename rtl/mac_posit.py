"""The `posit` PE kind: N posit code pairs per beat, exact products, quire accumulation, one
rounding per tile back to the posit format.

Same port contract as rtl.mac_int.IntMac: `a`/`w` = N posit codes (unsigned, both operands of
`fmt`: posit8_0 or posit16_1), `valid`, `last` in; `result` (a posit code of `fmt`),
`result_valid`, `overflow` out; `latency` cycles from a beat at `a`/`w` to `result` for the beat
marked `last`. `result` holds its value until the next tile's result replaces it.

Bit-exact model: golden.posit_mac.posit_mac (it states the order and the quire bound); in short:
every product is exact, the N products of a beat are summed exactly, the beat's sum is added to
a Q-bit two's-complement quire (SoftPosit's quire8 / quire16 layout: LSB = minpos^2, Q = 32 for
posit(8,0), 128 for posit(16,1)); on `last` the quire is rounded once to the format (nearest,
ties to the even code, never to 0 or NaR unless the sum is 0). A NaR operand makes the tile's
result NaR. A partial sum (after a beat) with |S| >= 2^(Q-1) LSBs overflows the carry guard: the
tile's result is NaR and `overflow` pulses with `result_valid` (at most one pulse per tile).

Datapath, per lane: unpack (|code|, the two's complement of a negative code; registered), decode
(the regime's run length by a leading-zero count of body ^ first bit, which also shifts the
exponent and fraction bits to the top; k from a small table, scale = {k, e} without an adder),
the significand product (F+1 bits each, F = the format's most fraction bits: a LUT product for
posit8, a multiplier block for posit16), the product shifted to its quire position
(scale_a + scale_b + 2*maxpos_scale, then the 2F low bits, always zero there, dropped:
4*maxpos_scale + 2 bits), negated when negative; an adder tree over the N lanes; the quire.

The quire is split into `chunks` of at most `chunk_bits` bits (posit16: two 64-bit halves), and
added skewed: chunk i adds beat b's bits one cycle after chunk i-1 did, taking chunk i-1's carry
of that same beat from a register, so each chunk is a short independent loop and chunk i always
holds the exact partial sum's bits. The bound check is off the loop, one cycle after the top
chunk: the top chunk's sum with one more sign bit leaves the range, or it is 100...0 while every
lower chunk of the same partial sum is 0 (-2^(Q-1), SoftPosit's quire NaR pattern). The output
stage takes |S| in the same chunked way (-S = ~S + 1, the carry registered between chunks),
finds the leading one block-wise (a nonzero flag per block of n bits; the highest nonzero block
and the one below it picked as a 2n-bit window, the blocks below ORed into the sticky bit; a
leading-zero count within the window, registered halfway), looks the leading one's position up
in a table (regime direction and length, exponent bits, beyond maxpos / below minpos), builds
the posit bit string ({a, ~a, exponent, fraction} shifted right by the regime length, filled
with a), rounds to nearest even and packs.

Pipeline from `a`/`w`:
  1 input registers   2 |code|   3 decoded operands   4 products   5 aligned magnitudes
  6 signed lanes   7.. adder tree (ceil(log2 N) levels)   then the quire (chunks + 1 cycles,
  to the final sum and flags)   |S| (chunks)   block flags, window, a register inside the
  window's leading-zero count (3)   the table and fields (1)   regime shift and round bits (1)
  the result register (1).
posit8_0, N = 2: latency 16; posit16_1, N = 2: latency 18 (N = 1, 4: one less, one more).
Measured on ECP5 LFE5U-85F (nextpnr, out of context): the posit8 2:4 2x2 example 134 MHz;
one posit16 MAC (N = 2) about 120 MHz, limited by its 115-bit lane negation and adder tree
(carry chains, not the split quire).
"""
from amaranth import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .accumulator import outside_signed_range
from .formats import POSIT_FORMATS as POSIT_PARAMS, posit_format
from .fp32 import reg
from .mac_fp import lut_product
from .pipeline import delay

POSIT_FORMATS = tuple(POSIT_PARAMS)
QUIRE_CHUNK_BITS = 64  # widest carry chain of the quire loop (128-bit quire: two chunks)
OUT_LZ_SPLIT = 2       # output normalisation: a register after every OUT_LZ_SPLIT steps


def leading_zeros(m, value, name, split=0, count_bits=None):
    """Binary-search leading-zero count: (count, normalised value, stages), the value shifted
    left by the count (zero filled). The count covers the top 2^count_bits bits of `value`
    (default: all of it, zero-padded at the bottom to a power of two) and is meaningful when a
    one sits among them. With `split`, a register after every `split` steps (`stages` of them)."""
    value = Value.cast(value)
    width = len(value)
    steps = max(1, ceil_log2(width)) if count_bits is None else count_bits
    size = max(width, 1 << steps)
    norm = Cat(Const(0, size - width), value) if size > width else value
    zeros = Const(0, steps)
    stages = 0
    for i, k in enumerate(reversed(range(steps))):
        step = 1 << k
        z = Signal(name=f"{name}_z{k}")
        m.d.comb += z.eq(~norm[size - step:].any())
        shifted = Signal(size, name=f"{name}_n{k}")
        m.d.comb += shifted.eq(Mux(z, norm << step, norm))
        count = Signal(steps, name=f"{name}_c{k}")
        m.d.comb += count.eq(zeros | (z << k))
        norm, zeros = shifted, count
        if split and i + 1 < steps and (i + 1) % split == 0:
            norm, zeros = reg(m, norm, f"{name}_rn{k}"), reg(m, zeros, f"{name}_rc{k}")
            stages += 1
    return zeros, norm, stages


def _or_all(values):
    """Bitwise OR of a list of values (a balanced tree)."""
    values = [Value.cast(v) for v in values]
    while len(values) > 1:
        values = [values[i] | values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def unpack(m, code, n, name):
    """(sign, body, special) of a posit(n, es) code: body = the n-1 bits after the sign of |code|
    (two's complement of a negative code), special = the code is 0 or NaR (body 0), nar = NaR."""
    code = Value.cast(code)
    body = Signal(n - 1, name=f"{name}_body")
    m.d.comb += body.eq(Mux(code[n - 1], -code, code)[:n - 1])
    return code[n - 1], body, ~body.any(), code == (1 << (n - 1))


def decode(m, body, special, n, es, name):
    """(scale, significand) of a posit's body (`unpack`): the value is
    (-1)^sign * 2^scale * significand / 2^F (F = n - 3 - es fraction bits, hidden bit on top);
    0 and NaR (`special`) have a zero significand."""
    fbits = n - 3 - es
    first = body[n - 2]
    # run = leading bits equal to `first`: leading zeros of body ^ first, with a stop bit below;
    # the same count shifts x left, so the bits after the regime's terminating bit are the
    # normalised x's bits below its top XOR first, where they came from the body (above the
    # stop bit's new place `run`): a mask, not a second shifter.
    x = Cat(Const(1, 1), body ^ first.replicate(n - 1))
    run, norm, _ = leading_zeros(m, x, f"{name}_lz")
    run = run[:ceil_log2(n)]
    rest = Signal(n - 1, name=f"{name}_rest")
    m.d.comb += rest.eq(Cat(*((norm[j] ^ first) & (run < j) for j in range(n - 1))))
    exp = rest[n - 1 - es:] if es else Cat()
    frac = rest[n - 1 - es - fbits:n - 1 - es]
    # k = run - 1 for a run of ones, -run for a run of zeros: a table of (first, run)
    kbits = ceil_log2(n) + 1
    index = Cat(run, first)
    k = Signal(signed(kbits), name=f"{name}_k")
    m.d.comb += k.eq(Array(Const((r - 1) if f else -r, signed(kbits))
                           for f in (0, 1) for r in range(1 << len(run)))[index])
    scale = Signal(signed(kbits + es), name=f"{name}_scale")
    m.d.comb += scale.eq(Cat(exp, k))  # k * 2^es + e
    return scale, Mux(special, 0, Cat(frac, Const(1, 1)))


class PositMac(wiring.Component):
    """Accumulates, over the beats of a tile, the N exact posit products of each beat in a quire;
    one posit result per tile. With `beat_sums` it does not accumulate: `result` is every beat's
    exact sum in quire units and its NaR bit (`beat_layout`, `result_valid` per beat, `latency`
    = 6 + tree levels), for arrays that keep the quire elsewhere (rtl.ws_partials, which rounds
    with `round_quire`)."""

    def __init__(self, n, fmt, quire_bits=None, chunk_bits=QUIRE_CHUNK_BITS, dsp=None,
                 beat_sums=False):
        f = posit_format(fmt)
        self.n, self.fmt, self.format, self.beat_sums = n, f, fmt, beat_sums
        self.bits, self.es = f.n, f.es
        self.frac_bits = f.max_fraction_bits
        self.max_scale = f.maxpos_scale
        self.tree_levels = ceil_log2(n)
        # one lane: magnitude bits of a product at its quire position, then signed tree sums
        self.lane_bits = 4 * self.max_scale + 2
        self.beat_bits = self.lane_bits + 1 + self.tree_levels
        self.quire_bits = f.quire_bits if quire_bits is None else quire_bits
        if self.quire_bits < self.beat_bits + 1:
            raise ValueError(f"quire_bits {self.quire_bits} cannot hold one beat; allowed: "
                             f">= {self.beat_bits + 1}")
        self.chunk_bits = chunk_bits
        self.chunks = -(-self.quire_bits // chunk_bits)
        self.dsp = self.bits > 8 if dsp is None else dsp
        steps = ceil_log2(self.bits)  # the output's leading-zero count within one block
        self.lz_stages = 2 + (steps - 1) // OUT_LZ_SPLIT
        self.round_latency = self.chunks + self.lz_stages + 2   # round_quire
        self.beat_layout = data.StructLayout({"value": signed(self.beat_bits), "nar": 1})
        self.latency = 6 + self.tree_levels + (
            0 if beat_sums else self.chunks + 1 + self.round_latency + 1)
        super().__init__({
            "a": In(data.ArrayLayout(unsigned(self.bits), n)),
            "w": In(data.ArrayLayout(unsigned(self.bits), n)),
            "valid": In(1), "last": In(1),
            "result": Out(self.beat_layout if beat_sums else unsigned(self.bits)),
            "result_valid": Out(1), "overflow": Out(1),
        })

    # -----------------------------------------------------------------------------------------

    def _lanes(self, m):
        """Stages 1-6: per lane the signed product at its quire position and its NaR flag."""
        nb, es, fb = self.bits, self.es, self.frac_bits
        a = delay(m, self.a, 1, "a_in", reset_less=True)
        w = delay(m, self.w, 1, "w_in", reset_less=True)
        terms, nars = [], []
        for i in range(self.n):
            ops = []
            for side, code in (("a", a[i]), ("w", w[i])):
                sign, body, special, nar = unpack(m, code, nb, f"d{side}{i}")
                r = {key: reg(m, v, f"b{side}{i}_{key}") for key, v in dict(
                    sign=sign, body=body, special=special, nar=nar).items()}
                scale, significand = decode(m, r["body"], r["special"], nb, es, f"d{side}{i}")
                ops.append((r["sign"], scale, significand, r["nar"]))
            (sa, ea, ma, nar_a), (sb, eb, mb, nar_b) = ops
            u = {key: reg(m, v, f"u{i}_{key}") for key, v in dict(
                sign=sa ^ sb, ea=ea, eb=eb, ma=ma, mb=mb, nar=nar_a | nar_b).items()}
            product = u["ma"] * u["mb"] if self.dsp else lut_product(u["ma"], u["mb"])
            shift = Signal(range(4 * self.max_scale + 1), name=f"p{i}_shift_c")
            m.d.comb += shift.eq(u["ea"] + u["eb"] + 2 * self.max_scale)
            p = dict(sign=reg(m, u["sign"], f"p{i}_sign"),
                     mant=reg(m, product[:2 * fb + 2], f"p{i}_mant"),
                     shift=reg(m, shift, f"p{i}_shift"),
                     nar=reg(m, u["nar"], f"p{i}_nar"))
            aligned = (p["mant"] << p["shift"])[2 * fb:2 * fb + self.lane_bits]
            magnitude = reg(m, aligned, f"x{i}_mag")
            sign = reg(m, p["sign"], f"x{i}_sign")
            value = Signal(signed(self.lane_bits + 1), name=f"x{i}_value", reset_less=True)
            m.d.sync += value.eq(Mux(sign, -magnitude, magnitude))
            terms.append(value)
            nars.append(delay(m, p["nar"], 2, f"x{i}_nar", reset_less=True))
        return terms, nars

    def elaborate(self, platform):
        m = Module()
        terms, nars = self._lanes(m)
        cycles = 6
        for level in range(self.tree_levels):
            pairs = [terms[i:i + 2] for i in range(0, len(terms), 2)]
            terms = [Signal(signed(self.lane_bits + 2 + level), name=f"sum{level}_{i}",
                            reset_less=True) for i in range(len(pairs))]
            m.d.sync += [t.eq(sum(p)) for t, p in zip(terms, pairs)]
        beat = terms[0]
        beat_nar = delay(m, Cat(*nars).any(), self.tree_levels, "beat_nar", reset_less=True)
        cycles += self.tree_levels
        valid = delay(m, self.valid, cycles, "valid_t", reset_less=False)
        last = delay(m, self.valid & self.last, cycles, "last_t", reset_less=False)
        if self.beat_sums:
            m.d.comb += [self.result.value.eq(beat), self.result.nar.eq(beat_nar),
                         self.result_valid.eq(valid)]
            return m

        total, nar, bound, final_valid = self._quire(m, beat, beat_nar, valid, last)
        code = self.round_quire(m, total, nar | bound)
        out_valid = delay(m, final_valid, self.round_latency, "out_valid", reset_less=False)
        out_flag = delay(m, bound, self.round_latency, "out_flag", reset_less=True)
        result = Signal(self.bits, name="result_reg", reset_less=True)  # held until the next tile
        m.d.comb += self.result.eq(result)
        with m.If(out_valid):
            m.d.sync += result.eq(code)
        m.d.sync += [self.result_valid.eq(out_valid), self.overflow.eq(out_valid & out_flag)]
        return m

    # --------------------------------------------------------------------------------- quire

    def _quire(self, m, beat, beat_nar, valid, last):
        """The skewed, chunked quire. Returns (final sum, tile NaR, tile bound exceeded, valid)
        registered `chunks + 1` cycles after the tile's last beat."""
        q, cw, chunks = self.quire_bits, self.chunk_bits, self.chunks
        addend = Signal(q, name="addend")
        m.d.comb += addend.eq(beat.as_signed())  # sign extended to the quire
        carry = Const(0, 1)
        pieces = []
        for i in range(chunks):
            lo, hi = i * cw, min((i + 1) * cw, q)
            width, top = hi - lo, i == chunks - 1
            x = delay(m, addend[lo:hi], i, f"q{i}_x", reset_less=True)
            v = delay(m, valid, i, f"q{i}_valid", reset_less=False)
            la = delay(m, last, i, f"q{i}_last", reset_less=False)
            acc = Signal(width, name=f"q{i}_acc")
            if not top:
                total = Signal(width + 1, name=f"q{i}_sum")
                m.d.comb += total.eq(acc + x + carry)
                new = total[:width]
                carry = reg(m, total[width], f"q{i}_carry")
                pieces.append(delay(m, new, chunks - i, f"q{i}_out", reset_less=True))
            else:
                total = Signal(signed(width + 1), name=f"q{i}_sum")
                m.d.comb += total.eq(acc.as_signed() + x.as_signed() + carry)
                new = total[:width]
                # The bound check is off the loop: one cycle later, from registered copies.
                new_r = reg(m, new, f"q{i}_new")
                pieces.append(new_r)
                edge = reg(m, total[width - 1:], f"q{i}_edge")
                # every lower chunk of the same partial sum is zero (they are aligned here)
                low_zero = ~Cat(*pieces[:-1]).any() if i else Const(1, 1)
                # outside [-2^(Q-1), 2^(Q-1)), or exactly -2^(Q-1) (the quire's NaR pattern)
                out = outside_signed_range(edge) | ((new_r == (1 << (width - 1))) & low_zero)
            with m.If(v):
                m.d.sync += acc.eq(Mux(la, 0, new))
        nar_in = delay(m, beat_nar, chunks, "q_nar_in", reset_less=True)
        v = delay(m, valid, chunks, "q_valid_top", reset_less=False)
        la = delay(m, last, chunks, "q_last_top", reset_less=False)
        tile_nar, tile_bound = Signal(name="tile_nar"), Signal(name="tile_bound")
        new_nar, new_bound = tile_nar | nar_in, tile_bound | out
        final = Signal(q, name="final_sum", reset_less=True)
        final_nar, final_bound = Signal(name="final_nar"), Signal(name="final_bound")
        with m.If(v):
            with m.If(la):
                m.d.sync += [tile_nar.eq(0), tile_bound.eq(0), final.eq(Cat(*pieces)),
                             final_nar.eq(new_nar), final_bound.eq(new_bound)]
            with m.Else():
                m.d.sync += [tile_nar.eq(new_nar), tile_bound.eq(new_bound)]
        final_valid = reg(m, v & la, "final_valid", reset_less=False)
        return final, final_nar, final_bound, final_valid

    # -------------------------------------------------------------------------------- output

    def _normalise(self, m, magnitude):
        """(position, fraction, sticky, nonzero, stages): the leading one's bit position in
        `magnitude`, the nb bits below it, whether any lower bit is set, magnitude != 0;
        `stages` registers later. Block-wise, so no wide value is shifted: (1) a nonzero flag per
        block of nb bits, (2) the highest nonzero block and the one below it picked (a window of
        2nb bits) with the OR of the blocks below the window, (3) a leading-zero count within
        the window's top block and the window shifted by it (a register halfway)."""
        nb = self.bits
        lb = ceil_log2(nb)  # nb is a power of two
        blocks = -(-len(magnitude) // nb)
        mag = Cat(magnitude, Const(0, blocks * nb - len(magnitude)))
        parts = [mag[j * nb:(j + 1) * nb] for j in range(blocks)]
        flags = reg(m, Cat(*(p.any() for p in parts)), "nz_flags")
        mag = reg(m, mag, "nz_mag")
        parts = [mag[j * nb:(j + 1) * nb] for j in range(blocks)]
        # one-hot of the highest nonzero block; a window = that block over the one below
        onehot = [flags[j] & ~flags[j + 1:].any() if j + 1 < blocks else flags[j]
                  for j in range(blocks)]
        window = Signal(2 * nb, name="nz_window")
        terms = [Mux(onehot[j], Cat(parts[j - 1] if j else Const(0, nb), parts[j]), 0)
                 for j in range(blocks)]
        m.d.comb += window.eq(_or_all(terms))
        block = _or_all([Mux(onehot[j], j, 0) for j in range(blocks)]) if blocks > 1 else Const(0, 1)
        below = _or_all([onehot[j] & flags[:j - 1].any() for j in range(2, blocks)]) \
            if blocks > 2 else Const(0, 1)
        st = {key: reg(m, v, f"nz_{key}") for key, v in dict(
            window=window, block=block, below=below, nonzero=flags.any()).items()}
        zeros, norm, inner = leading_zeros(m, st["window"], "out_lz", OUT_LZ_SPLIT,
                                           count_bits=lb)
        passed = {key: delay(m, st[key], inner, f"nz_{key}_l", reset_less=True)
                  for key in ("block", "below", "nonzero")}
        # position = block * nb + (nb - 1 - zeros): concatenation, as nb is a power of two
        position = Cat(~zeros[:lb], passed["block"])[:ceil_log2(blocks * nb)]
        fraction = norm[nb - 1:2 * nb - 1]
        sticky = passed["below"] | norm[:nb - 1].any()
        return position, fraction, sticky, passed["nonzero"], 2 + inner

    def round_quire(self, m, total, nar):
        """The posit code of the quire value `total` (NaR when `nar`), combinational
        `round_latency` = chunks + lz_stages + 2 cycles after `total`."""
        q, cw, chunks = self.quire_bits, self.chunk_bits, self.chunks
        nb, es = self.bits, self.es
        # |S| chunk by chunk: -S = ~S + 1, the +1's carry registered between chunks.
        sign = total[q - 1]
        carry = sign
        parts = [total[i * cw:min((i + 1) * cw, q)] for i in range(chunks)]
        done = []
        for i in range(chunks):
            s = delay(m, sign, i, f"abs{i}_sign", reset_less=True)
            part = delay(m, parts[i], i, f"abs{i}_in", reset_less=True)
            width = len(part)
            t = Signal(width + 1, name=f"abs{i}_sum")
            m.d.comb += t.eq(Mux(s, ~part, part) + carry)
            out = reg(m, t[:width], f"abs{i}_out")
            done = [reg(m, d, f"abs{i}_keep{j}") for j, d in enumerate(done)] + [out]
            carry = reg(m, t[width] & s, f"abs{i}_carry")
        magnitude = Cat(*done)[:q - 1]  # |S| < 2^(Q-1)
        sign = delay(m, sign, chunks, "out_sign", reset_less=True)
        nar = delay(m, nar, chunks, "out_nar", reset_less=True)

        # Normalise: the leading one of |S| and the nb bits below it.
        position, fraction, sticky, nonzero, stages = self._normalise(m, magnitude)
        sign = delay(m, sign, stages, "out_sign_l", reset_less=True)
        nar = delay(m, nar, stages, "out_nar_l", reset_less=True)
        # Everything about the leading one's scale, position - 2 * maxpos_scale, is a function
        # of the few bits of `position`: a constant table (LUTs, no carry chains). Per position:
        # the regime's direction a = (k >= 0), its arithmetic-shift length (k or -k - 1), the
        # exponent bits, and |x| >= maxpos (big) or < minpos (small).
        run_bits = ceil_log2(nb)
        entries = []
        for pos in range(1 << len(position)):
            scale = pos - 2 * self.max_scale
            big, small = scale >= self.max_scale, scale < -self.max_scale
            k, e = scale >> es, scale & ((1 << es) - 1)
            run = 0 if big or small else (k if k >= 0 else -k - 1)
            entries.append(Const(run | (e << run_bits) | (int(k >= 0) << (run_bits + es))
                                 | (int(big) << (run_bits + es + 1))
                                 | (int(small) << (run_bits + es + 2)), run_bits + es + 3))
        facts = Signal(run_bits + es + 3, name="out_facts")
        m.d.comb += facts.eq(Array(entries)[position])
        run, exp = facts[:run_bits], facts[run_bits:run_bits + es]
        a, big, small = facts[run_bits + es], facts[run_bits + es + 1], facts[run_bits + es + 2]
        fields = Cat(fraction, exp, ~a, a)
        st = {key: reg(m, v, f"r1_{key}") for key, v in dict(
            sign=sign, nar=nar, nonzero=nonzero, big=big, small=small, a=a,
            run=run, fields=fields, sticky=sticky).items()}

        # The body string: {a, ~a, e, fraction} shifted right by `run`, filled with a.
        ylen = len(fields)
        wide = Cat(Const(0, nb), st["fields"], st["a"].replicate(nb))
        z = (wide >> st["run"])[:ylen + nb]
        zlen = ylen + nb
        body = z[zlen - (nb - 1):]
        rnd = z[zlen - nb]
        sticky = z[:zlen - nb].any() | st["sticky"]
        st2 = {key: reg(m, v, f"r2_{key}") for key, v in dict(
            sign=st["sign"], nar=st["nar"], nonzero=st["nonzero"], big=st["big"],
            small=st["small"], body=body, up=rnd & (sticky | body[0])).items()}

        rounded = Signal(nb - 1, name="out_body")
        m.d.comb += rounded.eq(Mux(st2["big"], (1 << (nb - 1)) - 1,
                                   Mux(st2["small"], 1, st2["body"] + st2["up"])))
        signed_code = Signal(nb, name="out_code_c")
        m.d.comb += signed_code.eq(Mux(st2["sign"], -Cat(rounded, Const(0, 1)),
                                       Cat(rounded, Const(0, 1))))
        return Mux(st2["nar"], 1 << (nb - 1), Mux(st2["nonzero"], signed_code, 0))
