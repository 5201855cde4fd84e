"""Graph passes before quantization: fuse ReLU into GEMMs, pad K, sparsify to N:M.

Each pass mutates the graph in place and returns True when it changed something.
"""
from __future__ import annotations

import numpy as np

from ..golden.nm import prune_nm
from .ir import Graph


def _sole_producer_gemm(graph: Graph, name):
    """The GEMM that produces `name` directly or through layout-only host ops (to_nchw,
    reshape), each read only by the next; None otherwise."""
    node = graph.node(name)
    while node.op in ("to_nchw", "reshape") and len(graph.users(node.inputs[0])) == 1:
        node = graph.node(node.inputs[0])
    return node if node.op == "gemm" and len(graph.users(node.name)) == 1 else None


def fuse_relu(graph: Graph) -> bool:
    """A ReLU whose input comes from a GEMM read by nothing else (directly or through a
    layout-only op: ReLU commutes with it) becomes the GEMM's output-stage ReLU."""
    changed = False
    for relu in [n for n in graph.nodes if n.op == "relu"]:
        producer = _sole_producer_gemm(graph, relu.inputs[0])
        if producer is not None and not producer.attrs["relu"]:
            producer.attrs["relu"] = True
            graph.nodes.remove(relu)
            source = relu.inputs[0]
            for user in graph.users(relu.name):
                user.inputs = tuple(source if i == relu.name else i for i in user.inputs)
            if graph.output == relu.name:
                graph.output = source
            changed = True
    return changed


def nm_mask(weight, n, m):
    """Keep-mask of magnitude N:M pruning of a float weight (K, cols), groups of M along K.

    Uses golden.nm.prune_nm on the float32 bit patterns of |w| (for non-negative floats the bit
    pattern orders like the value), so ties break to the lower index exactly as SPEC §1 says.
    """
    magnitude = np.abs(np.asarray(weight, dtype=np.float32)).view(np.int32).astype(np.int64)
    return prune_nm(magnitude, n, m) != 0


def is_nm(weight, n, m) -> bool:
    """True when every group of M along K of `weight` (K, cols) has at most N non-zeros."""
    groups = np.asarray(weight).reshape(-1, m, np.shape(weight)[1])
    return bool(((groups != 0).sum(axis=1) <= n).all())


def pad_k(graph: Graph, multiples: dict[str, int]) -> bool:
    """Pad every GEMM's K with zero weight rows up to a multiple of `multiples[name]` (the host
    pads the activations with zero columns to match): attrs k_pad."""
    for gemm in graph.gemms():
        multiple = multiples[gemm.name]
        k = gemm.attrs["weight"].shape[0]
        padded = -(-k // multiple) * multiple
        gemm.attrs["k_pad"] = padded
        if padded != k:
            gemm.attrs["weight"] = np.pad(gemm.attrs["weight"], ((0, padded - k), (0, 0)))
    return True


def sparsify(graph: Graph, patterns: dict[str, tuple[int, int]]) -> bool:
    """Prune each GEMM's (K-padded) weight to its pattern (magnitude, `nm_mask`); a weight that
    is already N:M is kept as it is (attrs already_nm). attrs pattern = (n, m); n == m is dense."""
    for gemm in graph.gemms():
        n, m = patterns[gemm.name]
        w = gemm.attrs["weight"]
        gemm.attrs["pattern"] = (n, m)
        gemm.attrs["already_nm"] = n == m or is_nm(w, n, m)
        if not gemm.attrs["already_nm"]:
            gemm.attrs["weight"] = np.where(nm_mask(w, n, m), w, 0.0)
    return True
