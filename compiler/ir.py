"""The compiler's small IR: a straight-line graph of GEMM and host nodes.

A `Graph` is a list of `Node`s in execution order; every node produces one tensor named after
the node, read by later nodes through `inputs`. Shapes keep the leading batch dimension of the
example input (executors accept any batch size: reshapes store -1 there).

Ops and where they run (`Node.where`):

| op | where | computes |
|---|---|---|
| `input` | host | the model input (quantized on the host) |
| `gemm` | array | y = x @ W + bias (W: (K, N) weights, x: (rows, K)), optional fused ReLU |
| `relu` | host | max(x, 0) (a ReLU that could not be fused into a GEMM) |
| `add` | host | x + y (residual add) |
| `reshape` | host | a view/flatten (free: the same values in another shape) |
| `im2col` | host | the patches of an NCHW tensor as GEMM rows (Conv2d lowering, below) |
| `to_nchw` | host | GEMM rows (B*OH*OW, C) back to (B, C, OH, OW) |
| `maxpool` | host | 2-D max pooling (no unit on the accelerator) |
| `avgpool` | host | 2-D average pooling (integer: window sum, then divide with half-up rounding) |

Conv2d is lowered by im2col **on the host**: the host unfolds the input into rows of C*kh*kw
patch elements (column order c, i, j, the order of `weight.reshape(out, -1)`), the array runs the
GEMM, the host folds the rows back to NCHW.
"""
from __future__ import annotations

import dataclasses
from typing import Any

ARRAY_OPS = ("gemm",)
HOST_OPS = ("input", "relu", "add", "reshape", "im2col", "to_nchw", "maxpool", "avgpool")


@dataclasses.dataclass
class Node:
    """One IR node: `op`, the names of the nodes it reads, its output shape and op attributes."""
    name: str
    op: str
    inputs: tuple[str, ...]
    shape: tuple[int, ...]
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def where(self) -> str:
        """"array" for ops the accelerator runs, "host" for the rest."""
        return "array" if self.op in ARRAY_OPS else "host"


@dataclasses.dataclass
class Graph:
    """Nodes in execution order; `output` names the node whose tensor the model returns."""
    nodes: list[Node]
    output: str

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def users(self, name: str) -> list[Node]:
        """The nodes that read `name`'s tensor."""
        return [n for n in self.nodes if name in n.inputs]

    def gemms(self) -> list[Node]:
        return [n for n in self.nodes if n.op == "gemm"]

    @property
    def input(self) -> Node:
        return next(n for n in self.nodes if n.op == "input")

    def summary(self) -> list[dict]:
        """One row per node: name, op, where it runs, shape."""
        return [{"name": n.name, "op": n.op, "where": n.where, "shape": list(n.shape)}
                for n in self.nodes]
