"""PyTorch 2:4 semi-structured (CUTLASS) interop, checked against PyTorch itself and, through the
generated array in simulation, against PyTorch's product.

Needs the `torch` extra (pip install -e '.[test,torch]'). Without torch the module is skipped
locally, but under CI (CI set) the missing extra is a collection error, so CI cannot pass silently
without running these tests. Deselect with `-m "not torch"`.
"""
import importlib.util
import json
import os
import pathlib
import sys

import numpy as np
import pytest

try:
    import torch
except ImportError:
    if os.environ.get("CI"):
        raise ImportError("tests/test_torch_interop.py: CI must install the torch extra "
                          "(pip install -e '.[test,torch]')") from None
    pytest.skip("torch extra not installed (pip install -e '.[test,torch]')", allow_module_level=True)

from torch.sparse._semi_structured_conversions import (  # noqa: E402
    _calculate_meta_reordering_scatter_offsets,
    sparse_semi_structured_from_dense_cutlass,
    sparse_semi_structured_to_dense_cutlass,
)

from conftest import make_config  # noqa: E402
from nmforge.golden.gemm import sparse_gemm_int  # noqa: E402
from nmforge.golden.nm import MetadataError, compress_nm, decompress_nm, prune_nm  # noqa: E402
from nmforge.golden.torch_interop import (  # noqa: E402
    INSTALL_HINT,
    cutlass_meta_offsets,
    from_torch_semi_structured,
    to_torch_semi_structured,
    torch_nm_pattern,
    write_gemm_file,
)

pytestmark = pytest.mark.torch

# (out, K) of PyTorch weights Wt: int8 needs out % 16 == 0 and K % 64 == 0.
INT8_SHAPES = [(16, 64), (32, 128), (48, 64), (16, 256), (64, 192)]


def torch_compress(wt):
    return sparse_semi_structured_from_dense_cutlass(wt)


def random_24_int8(rng, out, k, zeros=False):
    """A random (out, K) int8 PyTorch weight pruned 2:4 along K (nmforge's prune_nm on W = Wt.T).
    `zeros`: draw from a zero-heavy set, so many groups keep fewer than 2 non-zeros."""
    if zeros:
        w = rng.choice(np.array([-128, -1, 0, 0, 0, 0, 1, 127]), size=(k, out))
    else:
        w = rng.integers(-128, 127, size=(k, out), endpoint=True)
    return torch.from_numpy(prune_nm(w, 2, 4).T.astype(np.int8).copy())


def assert_same_tensor(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    assert torch.equal(got, want)


@pytest.mark.parametrize("meta_dtype", [torch.int16, torch.int32])
@pytest.mark.parametrize("rows, meta_cols", [(32, 2), (64, 4), (96, 6), (32, 8)])
def test_reordering_offsets_equal_pytorchs(rows, meta_cols, meta_dtype):
    want = _calculate_meta_reordering_scatter_offsets(rows, meta_cols, meta_dtype, "cpu").numpy()
    got = cutlass_meta_offsets(rows, meta_cols, meta_dtype.itemsize * 8)
    assert np.array_equal(got.ravel(), want)


@pytest.mark.parametrize("out, k", INT8_SHAPES)
@pytest.mark.parametrize("zeros", [False, True])
def test_int8_round_trips_against_pytorch(out, k, zeros):
    rng = np.random.default_rng(out * 1000 + k + zeros)
    wt = random_24_int8(rng, out, k, zeros)
    t_values, t_meta = torch_compress(wt)
    assert t_meta.dtype == torch.int32

    values, indices = from_torch_semi_structured(t_values, t_meta)
    assert values.shape == indices.shape == (k // 2, out)
    assert np.array_equal(decompress_nm(values, indices, 2, 4), wt.numpy().T)

    back_values, back_meta = to_torch_semi_structured(values, indices)
    assert_same_tensor(back_values, t_values)
    assert_same_tensor(back_meta, t_meta)
    # and PyTorch's own decompression of what we produce gives the weight back
    assert torch.equal(sparse_semi_structured_to_dense_cutlass(back_values, back_meta), wt)


@pytest.mark.parametrize("out, k", INT8_SHAPES)
def test_nmforge_compressed_form_to_pytorch(out, k):
    """compress_nm pads under-full groups differently from PyTorch; to_torch still matches PyTorch."""
    rng = np.random.default_rng(k * 7 + out)
    wt = random_24_int8(rng, out, k, zeros=True)
    values, indices = compress_nm(wt.numpy().T, 2, 4)
    got_values, got_meta = to_torch_semi_structured(values, indices)
    want_values, want_meta = torch_compress(wt)
    assert_same_tensor(got_values, want_values)
    assert_same_tensor(got_meta, want_meta)


def test_full_groups_give_compress_nm_exactly():
    rng = np.random.default_rng(5)
    w = rng.integers(1, 127, size=(128, 32)) * rng.choice([-1, 1], size=(128, 32))  # no zeros
    w = prune_nm(w, 2, 4)
    values, indices = from_torch_semi_structured(*torch_compress(torch.from_numpy(w.T.astype(np.int8).copy())))
    want_values, want_indices = compress_nm(w, 2, 4)
    assert np.array_equal(values, want_values) and np.array_equal(indices, want_indices)


# Under-full groups: PyTorch's choice, written out from its encoding comment (flags of elements 0..3).
UNDERFULL = {
    (0, 0, 0, 0): (2, 3),
    (1, 0, 0, 0): (0, 2),
    (0, 1, 0, 0): (1, 2),
    (0, 0, 1, 0): (2, 3),
    (0, 0, 0, 1): (2, 3),
}


def test_underfull_groups_follow_pytorchs_choice():
    rng = np.random.default_rng(9)
    masks = list(UNDERFULL) + [m for m in np.ndindex(2, 2, 2, 2) if sum(m) == 2]
    wt = np.zeros((16, 64), dtype=np.int8)
    chosen = {}
    for r in range(16):
        for g in range(16):
            mask = masks[(r * 16 + g) % len(masks)]
            for i, bit in enumerate(mask):
                wt[r, 4 * g + i] = bit * int(rng.integers(1, 128))
            chosen[(g, r)] = UNDERFULL.get(mask, tuple(i for i in range(4) if mask[i]))
    t_values, t_meta = torch_compress(torch.from_numpy(wt))
    values, indices = from_torch_semi_structured(t_values, t_meta)
    for (g, r), pair in chosen.items():
        assert tuple(indices[2 * g:2 * g + 2, r]) == pair, (g, r)
    assert np.array_equal(decompress_nm(values, indices, 2, 4), wt.T)
    nm_values, nm_indices = compress_nm(wt.T, 2, 4)  # nmforge's own padding differs ...
    assert not np.array_equal(nm_indices, indices)
    back = to_torch_semi_structured(nm_values, nm_indices)  # ... yet to_torch gives PyTorch's choice
    assert_same_tensor(back[0], t_values)
    assert_same_tensor(back[1], t_meta)


def weight_with_marks(rows, k, marks):
    """(rows, K) int8 weight keeping positions (0, 1) of every group, except marks {(row, group): pair}."""
    wt = np.zeros((rows, k), dtype=np.int8)
    for r in range(rows):
        for g in range(k // 4):
            for i in marks.get((r, g), (0, 1)):
                wt[r, 4 * g + i] = 3 + i
    return wt


def test_hand_made_int8_metadata_layout():
    """16 x 64 int8: two int32 words per row, 8 groups each, nibble q of a word = group q, the code
    i0 | i1 << 2. Read of the CUTLASS layout (rows of a 16-block go 8a + b -> 2b + a, then the
    off-diagonal of each 2x2 block trades places, column pairs interleaved) for two columns:
    out[2i, 0] = meta[i, 0], out[2i + 1, 0] = meta[i, 1], out[2i, 1] = meta[i + 8, 0],
    out[2i + 1, 1] = meta[i + 8, 1]. Every group keeps (0, 1) (code 0x4) except the marks."""
    marks = {(0, 1): (2, 3),    # row 0, word 0, nibble 1 = 0xE -> meta[0, 0] = 0x444444E4
             (0, 9): (1, 3),    # row 0, word 1, nibble 1 = 0xD -> meta[0, 1] = 0x444444D4
             (8, 0): (0, 3),    # row 8, word 0, nibble 0 = 0xC -> meta[8, 0] = 0x4444444C
             (9, 15): (0, 2),   # row 9, word 1, nibble 7 = 0x8 -> meta[9, 1] = 0x84444444
             (1, 7): (1, 2)}    # row 1, word 0, nibble 7 = 0x9 -> meta[1, 0] = 0x94444444
    want = np.full((16, 2), 0x44444444, dtype=np.uint32)
    want[0, 0] = 0x444444E4     # meta[0, 0]
    want[1, 0] = 0x444444D4     # meta[0, 1]
    want[0, 1] = 0x4444444C     # meta[8, 0]
    want[3, 1] = 0x84444444     # meta[9, 1]
    want[2, 0] = 0x94444444     # meta[1, 0]
    want = want.view(np.int32)

    wt = weight_with_marks(16, 64, marks)
    t_values, t_meta = torch_compress(torch.from_numpy(wt))
    assert np.array_equal(t_meta.numpy(), want), "PyTorch disagrees with the hand reading of the layout"
    values, metadata = to_torch_semi_structured(*compress_nm(wt.T, 2, 4))
    assert np.array_equal(metadata.numpy(), want)
    _, indices = from_torch_semi_structured(torch.from_numpy(t_values.numpy()), torch.from_numpy(want))
    for (r, g), pair in marks.items():
        assert tuple(indices[2 * g:2 * g + 2, r]) == pair
    assert (indices[0::2] == 0).sum() == 16 * 16 - 3 and (indices[1::2] == 1).sum() == 16 * 16 - 5


def test_hand_made_float16_metadata_layout():
    """32 x 32 float16: two int16 words per row (4 groups each). Rows of a 32-block go
    8a + b -> 4b + a, then the 2x2 swap, so for b = 0..7 the block out[4b:4b+4, :] is
    [[meta[b, 0], meta[8+b, 0]], [meta[b, 1], meta[8+b, 1]],
     [meta[16+b, 0], meta[24+b, 0]], [meta[16+b, 1], meta[24+b, 1]]]."""
    marks = {(0, 0): (2, 3),    # meta[0, 0]  = 0x444E -> out[0, 0]
             (8, 5): (1, 2),    # meta[8, 1]  = 0x4494 -> out[1, 1]
             (17, 3): (0, 3),   # meta[17, 0] = 0xC444 -> out[6, 0]
             (31, 7): (1, 3)}   # meta[31, 1] = 0xD444 -> out[31, 1]
    want = np.full((32, 2), 0x4444, dtype=np.uint16)
    want[0, 0], want[1, 1], want[6, 0], want[31, 1] = 0x444E, 0x4494, 0xC444, 0xD444
    want = want.view(np.int16)

    wt = weight_with_marks(32, 32, marks)
    _, t_meta = torch_compress(torch.from_numpy(wt).half())
    assert np.array_equal(t_meta.numpy(), want), "PyTorch disagrees with the hand reading of the layout"
    _, metadata = to_torch_semi_structured(*compress_nm(wt.T, 2, 4), dtype=torch.float16)
    assert np.array_equal(metadata.numpy(), want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("out, k", [(32, 32), (64, 96), (32, 128)])
def test_16_bit_float_round_trips(dtype, out, k):
    rng = np.random.default_rng(out + k)
    w = prune_nm(rng.integers(-256, 256, size=(k, out)), 2, 4)
    wt = torch.from_numpy(w.T.copy()).to(dtype) * 0.375  # non-integer values, still exact
    t_values, t_meta = torch_compress(wt)
    values, indices = from_torch_semi_structured(t_values, t_meta)
    assert str(values.dtype) == str(dtype).removeprefix("torch.")
    back_values, back_meta = to_torch_semi_structured(values, indices)
    assert_same_tensor(back_values, t_values)
    assert_same_tensor(back_meta, t_meta)
    assert torch.equal(sparse_semi_structured_to_dense_cutlass(back_values, back_meta), wt)


def test_float32_is_1_2_in_pytorch():
    assert torch_nm_pattern(torch.float32) == (1, 2)
    assert torch_nm_pattern(torch.int8) == torch_nm_pattern(np.float16) == (2, 4)
    rng = np.random.default_rng(3)
    w = prune_nm(rng.choice(np.array([-5, 0, 0, 2, 7]), size=(64, 32)), 1, 2)
    t_values, t_meta = torch_compress(torch.from_numpy(w.T.copy()).float())
    values, indices = from_torch_semi_structured(t_values, t_meta, dtype=np.int64)
    assert np.array_equal(decompress_nm(values, indices, 1, 2), w)
    back_values, back_meta = to_torch_semi_structured(*compress_nm(w, 1, 2), dtype=torch.float32)
    assert_same_tensor(back_values, t_values)
    assert_same_tensor(back_meta, t_meta)


def test_integers_through_float16_exactly():
    rng = np.random.default_rng(11)
    w = prune_nm(rng.integers(-128, 127, size=(64, 32), endpoint=True), 2, 4)
    values, indices = to_torch_semi_structured(*compress_nm(w, 2, 4), dtype=torch.float16)
    want_values, want_meta = torch_compress(torch.from_numpy(w.T.copy()).half())
    assert_same_tensor(values, want_values)
    assert_same_tensor(indices, want_meta)
    ints, idx = from_torch_semi_structured(values, indices, dtype=np.int64)
    assert ints.dtype == np.int64 and np.array_equal(decompress_nm(ints, idx, 2, 4), w)


def test_inexact_values_are_rejected():
    w = np.zeros((64, 16), dtype=np.int64)
    w[0, 0] = 200
    with pytest.raises(ValueError, match="not exact as int8"):
        to_torch_semi_structured(*compress_nm(w, 2, 4))
    w[0, 0] = 2049
    with pytest.raises(ValueError, match="not exact as float16"):
        to_torch_semi_structured(*compress_nm(w, 2, 4), dtype=torch.float16)
    t_values, t_meta = torch_compress(torch.full((32, 32), 0.5, dtype=torch.float16).view(32, 8, 4)
                                      .mul(torch.tensor([1, 1, 0, 0], dtype=torch.float16)).view(32, 32))
    with pytest.raises(ValueError, match="not exact as int64"):
        from_torch_semi_structured(t_values, t_meta, dtype=np.int64)


def test_bad_shapes_and_metadata_are_rejected():
    w = prune_nm(np.ones((64, 8), dtype=np.int64), 2, 4)
    with pytest.raises(ValueError, match="multiple of 16"):
        to_torch_semi_structured(*compress_nm(w, 2, 4))                 # out = 8
    w = prune_nm(np.ones((32, 16), dtype=np.int64), 2, 4)
    with pytest.raises(ValueError, match="multiple of 64"):
        to_torch_semi_structured(*compress_nm(w, 2, 4))                 # K = 32 for int8
    values, indices = compress_nm(prune_nm(np.ones((64, 16), dtype=np.int64), 2, 4), 2, 4)
    indices[3, 5] = indices[2, 5]                                       # group 1, column 5
    with pytest.raises(MetadataError) as error:
        to_torch_semi_structured(values, indices)
    assert (error.value.group, error.value.col) == (1, 5)

    t_values, t_meta = torch_compress(torch.from_numpy(weight_with_marks(16, 64, {})))
    bad = t_meta.clone()
    bad[2, 0] = 0x44444404  # out[2, 0] = meta[1, 0]: row 1, group 1 gets code 0b0000 (0, 0)
    with pytest.raises(MetadataError) as error:
        from_torch_semi_structured(t_values, bad)
    assert (error.value.group, error.value.col) == (1, 1)
    with pytest.raises(ValueError, match="int32 metadata"):
        from_torch_semi_structured(t_values, t_meta.to(torch.int16))
    with pytest.raises(ValueError, match="takes int8, float16"):
        from_torch_semi_structured(t_values.to(torch.int16), t_meta)


def test_missing_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install nmforge\[torch\]") as error:
        to_torch_semi_structured(np.zeros((32, 16), dtype=np.int8), np.zeros((32, 16), dtype=np.uint8))
    assert str(error.value) == INSTALL_HINT


# ---------------------------------------------------------------------------------------------
# The must-show: a PyTorch 2:4 weight, in PyTorch's semi-structured form, through the generated
# array in simulation gives exactly PyTorch's product.

def _tb_array_has_gemm_file_hook():
    source = pathlib.Path(importlib.util.find_spec("nmforge.sim.tb_array").origin).read_text()
    return "NMFORGE_GEMM_FILE" in source


def random_torch_24_weight(generator, out, k):
    """A dense random int8 (out, K) weight pruned 2:4 in PyTorch: the two largest magnitudes of each
    group of 4 along K survive."""
    dense = torch.randint(-128, 128, (out, k), dtype=torch.int8, generator=generator)
    groups = dense.view(out, k // 4, 4)
    keep = groups.to(torch.int16).abs().topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return (groups * mask).view(out, k)


@pytest.mark.skipif(not _tb_array_has_gemm_file_hook(),
                    reason="needs NMFORGE_GEMM_FILE hook in sim/tb_array.py (one given GEMM from an .npz)")
def test_pytorch_weight_through_generated_array(simulate, tmp_path):
    generator = torch.Generator().manual_seed(2024)
    out, k, batch = 48, 64, 4  # int8 CUTLASS layout: out % 16 == 0, K % 64 == 0; out % cols == 0
    wt = random_torch_24_weight(generator, out, k)
    wt[0, :4] = torch.tensor([-128, 0, 0, -128], dtype=torch.int8)      # full-scale corners
    x = torch.randint(-128, 128, (batch, k), dtype=torch.int8, generator=generator)
    x[0, 0], x[0, 3] = -128, -128

    t_values, t_meta = sparse_semi_structured_from_dense_cutlass(wt)
    values, indices = from_torch_semi_structured(t_values, t_meta)
    # PyTorch's product of the dense weight, exact: F.linear semantics on int64, cross-checked in float64
    want = torch.matmul(x.to(torch.int64), wt.to(torch.int64).T)
    assert torch.equal(want, torch.nn.functional.linear(x.double(), wt.double()).to(torch.int64))
    assert np.array_equal(sparse_gemm_int(x.numpy(), values, indices, 2, 4, 32, "wrap")[0], want.numpy())

    gemm = tmp_path / "gemm.npz"
    write_gemm_file(gemm, x.numpy(), values, indices, c=want.numpy())
    timing = tmp_path / "timing.json"
    # the same 2 x 3 int8 2:4 array as test_rtl_blocks' "arr2_4", so a full run reuses its build
    config = make_config(name="arr2_4", rows=2, cols=3, nm="2:4", act_width=8, weight_width=8,
                         acc_width=32)
    result, _ = simulate(config, "array", seed=7, gemm_file=gemm, stall=0.3, result_json=timing)
    assert result.passed, f"simulation failed; log {result.log}; waves {result.waves}"
    gemms = json.loads(timing.read_text())["gemms"]
    assert [g["shape"] for g in gemms] == [[batch, k, out]], "the testbench did not run the given GEMM"

    # the comparison is live: a product off by one somewhere must fail the run
    wrong = want.numpy().copy()
    wrong[3, 11] += 1
    write_gemm_file(gemm, x.numpy(), values, indices, c=wrong)
    result, _ = simulate(config, "array", seed=7, gemm_file=gemm, stall=0.3)
    assert not result.passed
