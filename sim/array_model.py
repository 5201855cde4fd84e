"""How GEMMs map onto a generated array's streams: beats in, result tiles out (used by the array
regression, the board testbench and the host library alike; no cocotb here)."""
import numpy as np

from .kinds import Operands, kind_model
from .payload import pack


def bitmap_of(indices):
    """The M-bit bitmap of one group's indices (bit i = element i kept); a repeated index sets
    one bit, so a malformed index group stays malformed."""
    return sum(1 << int(i) for i in set(int(i) for i in indices))


def metadata_fields(weight_element_layout):
    """The metadata encodings a weight element carries: ["indices"], ["bitmap"] or [] (dense)."""
    return [name for name in ("indices", "bitmap") if name in weight_element_layout["fields"]]


def column_payload(ops, g, c, n, metadata):
    """The weight payload of column `c` for beat (K-group) `g`: values, metadata, side."""
    group = slice(g * n, (g + 1) * n)
    column = {"values": ops.values[group, c]}
    if "indices" in metadata:
        column["indices"] = ops.indices[group, c]
    if "bitmap" in metadata:
        column["bitmap"] = bitmap_of(ops.indices[group, c])
    if ops.w_side is not None:
        column["side"] = ops.w_side[g, c]
    return column


class ArrayModel:
    """Turns GEMMs into stream beats for one generated array, and its output beats back into tiles."""

    def __init__(self, info):
        p = info["parameters"]
        self.rows, self.cols, self.n, self.m = p["rows"], p["cols"], p["n"], p["m"]
        self.dense = p["dense"]
        self.kind = kind_model(info)
        interfaces = info["interfaces"]
        self.act_layout = interfaces["act"]["payload"]
        self.weight_layout = interfaces["weight"]["payload"]
        self.result_layout = interfaces["result"]["payload"]
        self.metadata = metadata_fields(self.weight_layout["element"])
        self.latency = info["latency_cycles"]

    def random_gemm(self, rng, shape=None, extreme=False) -> Operands:
        """Operands of a random GEMM (sim.kinds); K a random multiple of the kind's k_multiple."""
        if shape is None:
            step = self.kind.k_multiple
            shape = (self.rows * int(rng.integers(1, 3)), step * int(rng.integers(1, max(2, 7 * self.m // step + 1))),
                     self.cols * int(rng.integers(1, 3)))
        return self.kind.random_gemm(rng, shape, extreme)

    def beats(self, ops):
        """Input beats (act, weight) for every output tile, row tiles outer, column tiles inner."""
        groups = ops.a.shape[1] // self.m
        for i in range(0, ops.a.shape[0], self.rows):
            for j in range(0, ops.values.shape[1], self.cols):
                for g in range(groups):
                    act = {"data": ops.a[i:i + self.rows, g * self.m:(g + 1) * self.m],
                           "last": int(g == groups - 1)}
                    if ops.a_side is not None:
                        act["side"] = ops.a_side[i:i + self.rows, g]
                    cols = [column_payload(ops, g, c, self.n, self.metadata)
                            for c in range(j, j + self.cols)]
                    yield pack(self.act_layout, act), pack(self.weight_layout, cols)

    def tiles(self, c):
        for i in range(0, c.shape[0], self.rows):
            for j in range(0, c.shape[1], self.cols):
                yield (i, j), c[i:i + self.rows, j:j + self.cols]


def corrupt_groups(rng, indices, n, m, count):
    """Make `count` distinct (group, column) index groups malformed; returns their set."""
    groups, cols = indices.shape[0] // n, indices.shape[1]
    chosen = rng.choice(groups * cols, size=min(count, groups * cols), replace=False)
    bad = indices.copy()
    for flat in chosen:
        g, c = divmod(int(flat), cols)
        group = bad[g * n:(g + 1) * n, c]
        group[-1] = group[0]  # a repeated index: not strictly increasing (a bitmap then has N-1 bits)
    return {divmod(int(f), cols) for f in chosen}, bad
