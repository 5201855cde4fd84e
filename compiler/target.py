"""What the compiler needs to know about a design: PE kind, patterns it runs, operand widths."""
from __future__ import annotations

import dataclasses

from ..golden.nm import parse_runtime_pattern, pattern_name, runtime_patterns
from .errors import CompileError

KINDS = ("int", "fp")


@dataclasses.dataclass(frozen=True)
class Target:
    """A compile target derived from a design config (`gen.config.Config`)."""
    config: object

    def __post_init__(self):
        if self.config.pe_kind not in KINDS:
            raise CompileError(f"pe.kind {self.config.pe_kind!r}: the compiler targets "
                               f"{', '.join(KINDS)}")

    @property
    def kind(self) -> str:
        return self.config.pe_kind

    @property
    def default_pattern(self) -> tuple[int, int]:
        """The design's own pattern: its N:M (a run-time design: N:Mmax)."""
        return (self.config.n, self.config.m)

    def allowed_patterns(self) -> list[tuple[int, int]]:
        if self.config.runtime:
            return list(runtime_patterns(self.config.n, self.config.m))
        return [self.default_pattern]

    def pattern(self, text) -> tuple[int, int]:
        """The (n, m) of a per-layer pattern name on this design (CompileError if it cannot run)."""
        if self.config.runtime:
            try:
                return parse_runtime_pattern(text, self.config.n, self.config.m)
            except ValueError as error:
                raise CompileError(str(error)) from None
        if text in (self.config.nm, pattern_name(self.default_pattern)):
            return self.default_pattern
        raise CompileError(f"pattern {text!r} does not run on the fixed {self.config.nm} design "
                           f"{self.config.name}; allowed: {self.config.nm} (per-layer patterns "
                           f"need a run-time design, [sparsity] runtime = true)")

    @property
    def act_width(self) -> int:
        return self.config.act_width if self.kind == "int" else 8

    @property
    def weight_width(self) -> int:
        return self.config.weight_width if self.kind == "int" else 8

    @property
    def act_format(self) -> str | None:
        """Kind "fp": the activation / weight element formats (golden.formats names)."""
        return self.config.act_format if self.kind == "fp" else None

    @property
    def weight_format(self) -> str | None:
        return self.config.weight_format if self.kind == "fp" else None

    def fp_mac(self):
        """Kind "fp": (accumulate, lanes, acc_bits) of the array's FP MAC (rtl.mac_fp.FpMac), as
        golden.fp_mac takes them."""
        from ..rtl.mac_fp import FpMac
        mac = FpMac(self.config.n, self.config.act_format, self.config.weight_format,
                    self.config.accumulate)
        return self.config.accumulate, mac.lanes or 1, mac.acc_bits

    def k_multiple(self, pattern) -> int:
        """GEMM K is padded to a multiple of this for a layer of `pattern`: the K of one ACT
        word's K-group (rtl.isa.AcceleratorShape.k_group: M on fixed designs; on run-time designs
        N*Mmax, which every pattern's beat span golden.nm.beat_span divides)."""
        if self.config.runtime:
            return self.config.n * self.config.m
        return self.config.m
