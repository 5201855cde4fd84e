"""PyTorch 2:4 semi-structured sparsity (CUTLASS layout) <-> nmforge's compressed N:M form.

Optional: needs the `torch` extra (`pip install nmforge[torch]`); torch is imported only when a
function that takes or returns tensors is called.

Which matrix is which
---------------------
PyTorch keeps a linear layer's weight as Wt with shape (out, K) and computes y = x @ Wt.T
(`torch.nn.functional.linear`); `torch.sparse._semi_structured_conversions.
sparse_semi_structured_from_dense_cutlass(Wt)` compresses along Wt's LAST dimension (K), in groups of
4 consecutive elements, and returns `(values, metadata)`:

  values    (out, K//2), Wt's dtype: row r holds, for group g = 0..K/4-1, its two kept elements at
            columns 2g, 2g+1 (lower index first);
  metadata  (out, K//64) int32 for int8 values, (out, K//32) int16 for float16/bfloat16: a buffer in
            CUTLASS's reordered layout (below).

nmforge's W is the (K, cols) operand of C = A @ W with groups along axis 0 (golden.nm), so
W = Wt.T, cols = out, and A = x: C = x @ Wt.T is the same product. In nmforge's form
`values_nm = values.T` (shape (K//4*2, out)) and `indices_nm[2g + j, r]` is the position (0..3)
inside group g of row r of the j-th kept value.

float32 is a different pattern in PyTorch: 1:2 (one of each pair of float32 kept, the pair's
metadata nibble written as if the 8 bytes were four 16-bit halves, 0b0100 = first, 0b1110 =
second). It maps to nmforge's 1:2 form (values (K//2, out)); see `torch_nm_pattern`.

The metadata layout (read from torch/sparse/_semi_structured_conversions.py, torch 2.13)
-----------------------------------------------------------------------------------------
1. Nibbles. Each group of 4 gets a 4-bit code `i0 | i1 << 2`, i0 < i1 the positions of its two kept
   elements (the six valid codes: 0x4 (0,1), 0x8 (0,2), 0xC (0,3), 0x9 (1,2), 0xD (1,3), 0xE (2,3)).
2. Words. A metadata element packs Q consecutive groups of one row, group q of the word in bits
   4q..4q+3 (low nibble first): Q = 8 in an int32 (int8 values), Q = 4 in an int16 (16-bit values).
   This gives the logical matrix meta[r, c] of shape (out, K/(4Q)), word c covering groups
   cQ .. cQ+Q-1 (the int32 words are two's complement: a top nibble >= 8 makes them negative).
3. Reordering (CUTLASS reorder_meta, for the ColumnMajorInterleaved<2> layout of the sparse tensor
   core GEMM). Logical element (r, c) moves to a destination (r', c'):
   a. rows, in blocks of B = 16 (int32) or 32 (int16) rows: within a block, row 8a + b goes to
      row I*b + a with I = B/8 (a transpose of the block's (B/8) x 8 row grid);
   b. 2x2 swizzle: in each 2x2 block of (r', c) the two off-diagonal elements trade places
      (even row/odd column <-> odd row/even column);
   c. storage: column pairs are interleaved row by row, flat offset
      (c' // 2) * 2 * out + 2 * r' + c' % 2, and the returned (out, K/(4Q)) tensor is just that
      flat buffer reshaped. Both K/(4Q) must be even and out a multiple of B, so int8 needs
      out % 16 == 0 and K % 64 == 0, float16/bfloat16 out % 32 == 0 and K % 32 == 0 (float32:
      K % 16 == 0); torch itself only checks part of that and fails with an index error otherwise.
   For int8 with K = 64 (two words per row) this comes out as: output[2i, 0] = meta[i, 0],
   output[2i + 1, 0] = meta[i, 1], output[2i, 1] = meta[i + 8, 0], output[2i + 1, 1] = meta[i + 8, 1].

Groups with fewer than two non-zeros
------------------------------------
The metadata still names two positions. PyTorch picks them by a fixed rule (from its Boolean
encoding), listed here by the non-zero flags of elements 0, 1, 2, 3 of the group:

  [F,F,F,F] -> (2, 3)  [T,F,F,F] -> (0, 2)  [F,T,F,F] -> (1, 2)  [F,F,T,F] -> (2, 3)  [F,F,F,T] -> (2, 3)

nmforge's `compress_nm` pads with the lowest unused positions instead ((0, 1), (0, 1), (0, 1),
(0, 2), (0, 3) for these five), so:
- `from_torch_semi_structured` keeps PyTorch's positions as they are (they are valid, strictly
  increasing, with zero values), so decompressing gives exactly the dense weight; its indices equal
  `compress_nm`'s wherever every group has exactly two non-zeros.
- `to_torch_semi_structured` re-derives the positions from the non-zero pattern with PyTorch's rule,
  so its output is bit-for-bit what PyTorch produces for the same dense weight, whatever padding
  the nmforge form used. (For float32 1:2 pairs PyTorch's rule is: first element if it is
  non-zero, else the second.) Zero means `value == 0`, so -0.0 counts as zero, as in PyTorch.

Integers
--------
PyTorch's CUTLASS conversion takes int8 directly on CPU (int32 metadata), so signed integer weights
of up to 8 bits go through it as int8, exactly. `dtype=` can instead route integers through
float16 / bfloat16 (exact while |w| <= 2048 / 256: a float16 layout, int16 metadata) and
`from_torch_semi_structured(..., dtype=np.int64)` brings float values back to integers; every cast
is checked to be exact and raises ValueError otherwise.
"""
import numpy as np

from .nm import MetadataError, validate_indices

INSTALL_HINT = "PyTorch is not installed: pip install nmforge[torch]"

# nibble code (i0 | i1 << 2) -> (i0, i1) for the six valid 2:4 codes
NIBBLE_PAIRS = {0x4: (0, 1), 0x8: (0, 2), 0xC: (0, 3), 0x9: (1, 2), 0xD: (1, 3), 0xE: (2, 3)}
# float32 1:2: nibble of a pair -> kept position
PAIR_NIBBLES = {0x4: 0, 0xE: 1}


def _torch():
    try:
        import torch
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return torch


class _Layout:
    """How PyTorch lays out one value dtype: the N:M pattern, metadata word, size constraints."""

    def __init__(self, name, n, m, meta_dtype, row_block):
        self.name, self.n, self.m = name, n, m
        self.meta_dtype = np.dtype(meta_dtype)
        self.meta_bits = self.meta_dtype.itemsize * 8
        self.nibbles = self.meta_bits // 4          # groups (pairs for 1:2) per metadata word
        self.row_block = row_block                  # torch rows must be a multiple of this
        self.k_multiple = 2 * self.nibbles * m      # two words per row at least, an even count

    def meta_cols(self, k):
        return k // (self.nibbles * self.m)


_LAYOUTS = {
    "int8": _Layout("int8", 2, 4, np.int32, 16),
    "float16": _Layout("float16", 2, 4, np.int16, 32),
    "bfloat16": _Layout("bfloat16", 2, 4, np.int16, 32),
    "float32": _Layout("float32", 1, 2, np.int16, 32),
}


def _dtype_name(dtype):
    """'int8' / 'float16' / 'bfloat16' / 'float32' for a torch or numpy dtype, or None."""
    text = str(dtype)
    if text.startswith("torch."):
        name = text.removeprefix("torch.")
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            return None
    aliases = {"half": "float16", "float": "float32"}
    return aliases.get(name, name) if name in (*_LAYOUTS, *aliases) else None


def _layout(dtype):
    name = _dtype_name(dtype)
    if name is None:
        raise ValueError(f"PyTorch's semi-structured (CUTLASS) format takes int8, float16, bfloat16 or "
                         f"float32 values, got {dtype}")
    return _LAYOUTS[name]


def torch_nm_pattern(dtype):
    """The (N, M) pattern PyTorch's CUTLASS format uses for values of `dtype` (torch or numpy):
    (2, 4) for int8, float16, bfloat16; (1, 2) for float32."""
    layout = _layout(dtype)
    return layout.n, layout.m


def _numpy_dtype(name):
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _exact_cast(x, dtype, what):
    """`x` cast to numpy `dtype`, raising ValueError unless every element survives exactly."""
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    with np.errstate(all="ignore"):
        y = x.astype(dtype)
        back = y.astype(x.dtype)
        ok = back == x
        if np.issubdtype(x.dtype, np.floating) and np.issubdtype(dtype, np.integer):
            ok &= np.isfinite(x.astype(np.float64))
    if not ok.all():
        bad = np.argwhere(~ok)[0]
        raise ValueError(f"{what}: value {x[tuple(bad)]} at {tuple(int(i) for i in bad)} is not exact as {dtype}")
    return y


def cutlass_meta_offsets(rows, meta_cols, meta_bits):
    """Flat positions (rows, meta_cols) in the reordered metadata buffer of each logical metadata
    word meta[r, c] (module docstring, step 3): `reordered.flat[offsets] = meta`."""
    if meta_bits not in (16, 32):
        raise ValueError(f"metadata words are 16 or 32 bits, got {meta_bits}")
    block, interleave = (32, 4) if meta_bits == 16 else (16, 2)
    r = np.arange(rows)[:, None]
    c = np.arange(meta_cols)[None, :]
    dst_r = np.broadcast_to(r // block * block + (r % 8) * interleave + (r % block) // 8, (rows, meta_cols))
    dst_c = np.broadcast_to(c, (rows, meta_cols))
    swap = (dst_r % 2) != (dst_c % 2)          # off-diagonal in its 2x2 block
    step = np.where(dst_r % 2 == 0, 1, -1)     # even row/odd col goes down-left, odd/even up-right
    dst_r = np.where(swap, dst_r + step, dst_r)
    dst_c = np.where(swap, dst_c - step, dst_c)
    return (dst_c // 2) * 2 * rows + 2 * dst_r + dst_c % 2


def _check_torch_shape(layout, rows, k):
    if rows % layout.row_block:
        raise ValueError(f"{layout.name}: PyTorch's CUTLASS layout needs the weight's out dimension "
                         f"(nmforge cols) to be a multiple of {layout.row_block}, got {rows}")
    if k % layout.k_multiple:
        raise ValueError(f"{layout.name}: PyTorch's CUTLASS layout needs K to be a multiple of "
                         f"{layout.k_multiple}, got {k}")


def _tensor_to_numpy(t, torch):
    """A CPU numpy copy of a torch tensor (bfloat16 via its bits) or an ndarray as is."""
    if isinstance(t, np.ndarray):
        return t
    if not isinstance(t, torch.Tensor):
        return np.asarray(t)
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(_numpy_dtype("bfloat16")).copy()
    return t.numpy().copy()


def _numpy_to_tensor(x, torch):
    if x.dtype == _numpy_dtype("bfloat16"):
        return torch.from_numpy(np.ascontiguousarray(x).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(x))


def from_torch_semi_structured(values, metadata, dtype=None):
    """nmforge's (values, indices) of W = Wt.T from PyTorch's CUTLASS form of the (out, K) weight Wt.

    `values`, `metadata`: the two tensors `sparse_semi_structured_from_dense_cutlass(Wt)` returns
    (numpy arrays are accepted too). Returns numpy `values` (K//M*N, out) of the matching dtype (or
    `dtype`, cast exactly) and uint8 `indices` of the same shape, for N:M = `torch_nm_pattern`:
    decompress_nm(values, indices, N, M) == Wt.T. PyTorch's positions for groups with fewer than N
    non-zeros are kept as they are. Raises MetadataError (group along K, column = row of Wt) for a
    metadata code that names no valid pair, ValueError for inconsistent shapes or dtypes.
    """
    torch = _torch()
    vals = _tensor_to_numpy(values, torch)
    meta = _tensor_to_numpy(metadata, torch)
    layout = _layout(vals.dtype)
    if vals.ndim != 2 or meta.ndim != 2:
        raise ValueError(f"values and metadata must be 2-D, got shapes {vals.shape} and {meta.shape}")
    rows, k = vals.shape[0], vals.shape[1] * layout.m // layout.n
    _check_torch_shape(layout, rows, k)
    meta_cols = layout.meta_cols(k)
    if meta.dtype != layout.meta_dtype or meta.shape != (rows, meta_cols):
        raise ValueError(f"{layout.name} values of shape {vals.shape} need {layout.meta_dtype} metadata of "
                         f"shape {(rows, meta_cols)}, got {meta.dtype} {meta.shape}")

    offsets = cutlass_meta_offsets(rows, meta_cols, layout.meta_bits)
    words = meta.reshape(-1)[offsets].view(f"u{layout.meta_dtype.itemsize}").astype(np.int64)
    shifts = 4 * np.arange(layout.nibbles)
    nibbles = ((words[:, :, None] >> shifts) & 0xF).reshape(rows, -1)   # (rows, groups)
    table = PAIR_NIBBLES if layout.n == 1 else NIBBLE_PAIRS
    known = np.isin(nibbles, list(table))
    if not known.all():
        g, r = (int(i) for i in np.argwhere(~known.T)[0])  # lowest group, then lowest column
        raise MetadataError(g, r, f"metadata code {int(nibbles[r, g]):#06b} names no valid "
                                  f"{layout.n}:{layout.m} selection")
    lookup = np.zeros((16, layout.n), dtype=np.uint8)
    for code, pos in table.items():
        lookup[code] = pos
    positions = lookup[nibbles]                                          # (rows, groups, N)
    indices = positions.transpose(1, 2, 0).reshape(-1, rows)
    out_values = vals.T.copy()
    if dtype is not None:
        out_values = _exact_cast(out_values, dtype, "from_torch_semi_structured")
    return out_values, indices


def _dense_from_compressed(values, indices, n, m):
    """Scatter compressed (values, indices) of any dtype back to (K, cols); validates indices."""
    if values.shape != indices.shape or values.ndim != 2:
        raise ValueError(f"values shape {values.shape} and indices shape {indices.shape} must be the same 2-D shape")
    if values.shape[0] % n:
        raise ValueError(f"values has {values.shape[0]} rows, not a multiple of N={n}")
    validate_indices(indices, n, m)
    groups, cols = values.shape[0] // n, values.shape[1]
    dense = np.zeros((groups, m, cols), dtype=values.dtype)
    np.put_along_axis(dense, indices.reshape(groups, n, cols).astype(np.intp), values.reshape(groups, n, cols), axis=1)
    return dense


def _torch_choice_24(nonzero):
    """PyTorch's two positions per group from its non-zero flags (G, 4, cols) -> (G, 2, cols),
    straight from its Boolean encoding of sparse_semi_structured_from_dense_cutlass."""
    m0, m1, m3 = nonzero[:, 0], nonzero[:, 1], nonzero[:, 3]
    expr0, expr1, expr2 = m0 & m1, ~m0 & m1, ~m0 & ~m1
    i0 = expr1.astype(np.uint8) | (expr2.astype(np.uint8) << 1)
    i1 = (expr0 | expr2 | m3).astype(np.uint8) | ((expr1 | ~m1).astype(np.uint8) << 1)
    return np.stack([i0, i1], axis=1)


def to_torch_semi_structured(values, indices, dtype=None):
    """PyTorch's CUTLASS (values, metadata) tensors for nmforge's compressed W (K, cols) = Wt.T.

    The result equals `sparse_semi_structured_from_dense_cutlass(Wt)` bit for bit. The value dtype is
    `dtype` (torch or numpy: int8, float16, bfloat16, float32) or, if None, int8 for integer
    `values` and the same float type for float16/bfloat16/float32 ones; every value must be exact in
    it (ValueError). The pattern is `torch_nm_pattern(dtype)`. Positions are re-derived from the
    non-zero pattern with PyTorch's rule, so the padding of under-full groups may differ from
    `indices` (module docstring). Raises MetadataError for malformed `indices`, ValueError if the
    shape does not fit the CUTLASS layout (cols % 16 or 32, K % 64 / 32 / 16).
    """
    torch = _torch()
    values = _tensor_to_numpy(values, torch)
    indices = _tensor_to_numpy(indices, torch)
    if dtype is None:
        dtype = "int8" if np.issubdtype(values.dtype, np.integer) else values.dtype
    layout = _layout(dtype)
    values = _exact_cast(values, _numpy_dtype(layout.name), "to_torch_semi_structured")
    if not np.issubdtype(np.asarray(indices).dtype, np.integer):
        raise TypeError(f"indices must be an integer array, got dtype {indices.dtype}")
    n, m = layout.n, layout.m
    dense = _dense_from_compressed(values, indices, n, m)                # (G, M, cols)
    groups, _, rows = dense.shape
    k = groups * m
    _check_torch_shape(layout, rows, k)

    nonzero = dense != 0
    if n == 2:
        chosen = _torch_choice_24(nonzero)
        codes = chosen[:, 0].astype(np.int64) | (chosen[:, 1].astype(np.int64) << 2)    # (G, cols)
    else:
        chosen = (~nonzero[:, 0]).astype(np.uint8)[:, None]                             # (G, 1, cols)
        codes = np.where(chosen[:, 0] == 0, 0x4, 0xE).astype(np.int64)
    kept = np.take_along_axis(dense, chosen.astype(np.intp), axis=1)                     # (G, N, cols)
    torch_values = kept.reshape(groups * n, rows).T

    meta_cols = layout.meta_cols(k)
    nibbles = codes.T.reshape(rows, meta_cols, layout.nibbles)
    words = (nibbles << (4 * np.arange(layout.nibbles))).sum(axis=2)
    words = words.astype(f"u{layout.meta_dtype.itemsize}").view(layout.meta_dtype)
    reordered = np.empty(rows * meta_cols, dtype=layout.meta_dtype)
    reordered[cutlass_meta_offsets(rows, meta_cols, layout.meta_bits)] = words
    return (_numpy_to_tensor(np.ascontiguousarray(torch_values), torch),
            _numpy_to_tensor(reordered.reshape(rows, meta_cols), torch))


def write_gemm_file(path, a, values, indices, c=None):
    """Write one integer GEMM for the array testbench (NMFORGE_GEMM_FILE): `a` (rows, K), the
    compressed weights `values`/`indices` (K//M*N, cols) and optionally the expected product `c`
    (rows, cols), all as int64 arrays in an .npz."""
    arrays = {"a": a, "values": values, "indices": indices}
    if c is not None:
        arrays["c"] = c
    np.savez(path, **{name: np.asarray(x).astype(np.int64) for name, x in arrays.items()})
