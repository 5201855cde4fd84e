"""The bitmap metadata encoding (SPEC §1) in a generated array: `sparsity.encoding = "bitmap"`
puts an M-bit bitmap per column and beat on the weight stream (rtl.decoder.BitmapDecoder in every
PE); the array regression (sim/tb_array.py: random GEMMs under random stalls, bit-exact) passes,
and malformed bitmaps injected into random groups are flagged and counted exactly."""
import pathlib

import pytest

from nmforge.gen.config import load_config, parse_config

from conftest import assert_passed

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def bitmap_config(name, nm, rows=2, cols=3):
    return parse_config({
        "name": name,
        "array": {"rows": rows, "cols": cols, "dataflow": "output_stationary"},
        "sparsity": {"nm": nm, "encoding": "bitmap"},
        "pe": {"kind": "int", "act_width": 8, "weight_width": 8, "acc_width": 32,
               "overflow": "wrap"},
    }, source="test")


@pytest.mark.parametrize("nm", ["2:4", pytest.param("2:8", marks=pytest.mark.slow)])
def test_bitmap_array_gemms_under_random_stalls(simulate, nm):
    result, generated = simulate(bitmap_config(f"bmp{nm.replace(':', '_')}", nm), "array",
                                 seed=7, gemms=4, stall=0.3)
    assert_passed(result)
    info = generated.info
    assert info["parameters"]["encoding"] == "bitmap" and not info["parameters"]["runtime"]
    element = info["interfaces"]["weight"]["payload"]["element"]["fields"]
    m = int(nm.split(":")[1])
    assert set(element) == {"values", "bitmap"}
    assert element["bitmap"]["layout"]["width"] == m


def test_bitmap_array_flags_and_counts_malformed_bitmaps(simulate):
    """tb_array corrupts NMFORGE_CORRUPT random (group, column) pairs per GEMM (a repeated index,
    so the bitmap has N-1 bits set) and checks meta_error and bad_groups == corrupted groups
    (times the row tiles that re-stream them)."""
    result, _ = simulate(bitmap_config("bmpbad", "2:8", rows=2, cols=3), "array", seed=5,
                         gemms=3, stall=0.2, corrupt=6)
    assert_passed(result)


def test_bitmap_example_is_the_index_example_with_bitmaps():
    bitmap = load_config(EXAMPLES / "nm24_int8_4x4_bitmap.toml")
    index = load_config(EXAMPLES / "nm24_int8_4x4.toml")
    assert bitmap.encoding == "bitmap" and index.encoding == "index"
    assert (bitmap.rows, bitmap.cols, bitmap.nm, bitmap.pe_params) == \
        (index.rows, index.cols, index.nm, index.pe_params)
