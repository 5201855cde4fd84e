"""Design configuration schema: examples, hashing, round trip, and one test per error kind."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nmforge.gen.config import (
    DATAFLOWS,
    DEFAULT_EXAMPLE,
    OVERFLOW_MODES,
    PE_KINDS,
    ConfigError,
    load_config,
    parse_config,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.toml"))

EXPECTED_EXAMPLES = {
    # stem: (nm, rows/cols, clock_mhz)
    "dense_int8_4x4": ("2:2", 4, 120.0),
    "nm24_int8_4x4": ("2:4", 4, 120.0),
    "nm24_int8_2x2": ("2:4", 2, 24.0),  # sized and clocked for the iCE40 UP5K
    "dense_int8_8x8": ("2:2", 8, 120.0),
    "nm24_int8_8x8": ("2:4", 8, 120.0),
    "nm28_int8_8x8": ("2:8", 8, 120.0),
    "nm14_int8_8x8": ("1:4", 8, 120.0),
}

VALID = """\
# a comment
name = "nm24_int8_4x4"

[array]
rows = 4
cols = 4
dataflow = "output_stationary"

[sparsity]
nm = "2:4"

[pe]
kind = "int"
act_width = 8
weight_width = 8
acc_width = 32
overflow = "wrap"

[synth]
clock_mhz = 120.0
"""


def write(tmp_path: Path, text: str, name: str = "design.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def edit(old: str, new: str, text: str = VALID) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# ----------------------------------------------------------------------------- examples


def test_expected_examples_exist():
    assert {p.stem for p in EXAMPLES} >= set(EXPECTED_EXAMPLES)
    assert (REPO / DEFAULT_EXAMPLE).is_file()
    assert Path(DEFAULT_EXAMPLE).as_posix() == "examples/nm24_int8_4x4.toml"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_loads(path: Path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and len(first) > 10, "first line must describe the design"
    if path.stem in EXPECTED_EXAMPLES:
        nm, size, clock_mhz = EXPECTED_EXAMPLES[path.stem]
        assert (cfg.nm, cfg.rows, cfg.cols) == (nm, size, size)
        assert (cfg.pe_kind, cfg.act_width, cfg.weight_width, cfg.acc_width) == ("int", 8, 8, 32)
        assert cfg.overflow == "wrap" and cfg.clock_mhz == clock_mhz
        assert cfg.dataflow == "output_stationary"


def test_dense_and_sparse_examples_have_equal_multipliers():
    dense = load_config(REPO / "examples/dense_int8_4x4.toml")
    sparse = load_config(REPO / DEFAULT_EXAMPLE)
    assert dense.dense and not sparse.dense
    assert dense.multipliers == sparse.multipliers == 4 * 4 * 2
    assert dense.dense_macs_per_cycle == 32
    assert sparse.dense_macs_per_cycle == 64
    assert "equal multiplier count" in (REPO / "examples/dense_int8_4x4.toml").read_text()


def test_derived_properties():
    cfg = load_config(REPO / "examples/nm28_int8_8x8.toml")
    assert (cfg.n, cfg.m, cfg.nm, cfg.dense) == (2, 8, "2:8", False)
    assert cfg.multipliers == 8 * 8 * 2
    assert cfg.dense_macs_per_cycle == 8 * 8 * 8


def test_allowed_sets_are_tuples():
    assert DATAFLOWS == ("output_stationary", "dot_product", "weight_stationary")
    assert PE_KINDS == ("int", "fp", "scalable", "mpgemm", "mx", "bitserial", "posit")
    assert OVERFLOW_MODES == ("wrap", "saturate")


# ------------------------------------------------------------------ hash and round trip


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_round_trip(path: Path):
    cfg = load_config(path)
    again = parse_config(cfg.to_dict())
    assert again == cfg
    assert again.config_hash() == cfg.config_hash()


def test_to_dict_shape():
    d = load_config(REPO / DEFAULT_EXAMPLE).to_dict()
    assert d == {
        "name": "nm24_int8_4x4",
        "array": {"rows": 4, "cols": 4, "dataflow": "output_stationary"},
        "sparsity": {"nm": "2:4"},
        "pe": {"kind": "int", "act_width": 8, "weight_width": 8, "acc_width": 32,
               "overflow": "wrap"},
        "synth": {"clock_mhz": 120.0},
    }


def test_hash_is_stable_and_hex():
    h = load_config(REPO / DEFAULT_EXAMPLE).config_hash()
    assert h == load_config(REPO / DEFAULT_EXAMPLE).config_hash()
    assert len(h) == 64 and int(h, 16) >= 0


def test_hash_independent_of_key_order_and_comments(tmp_path: Path):
    reordered = """\
[pe]
overflow = "wrap"   # trailing comment
acc_width = 32
weight_width = 8
act_width = 8
kind = "int"

[synth]
clock_mhz = 120     # integer form of the same clock

[sparsity]
nm = "2:4"

[array]
dataflow = "output_stationary"
cols = 4
rows = 4
"""
    a = load_config(write(tmp_path, VALID, "a.toml"))
    b = load_config(write(tmp_path, 'name = "nm24_int8_4x4"\n' + reordered, "b.toml"))
    assert a == b
    assert a.config_hash() == b.config_hash()
    assert a.config_hash() == load_config(REPO / DEFAULT_EXAMPLE).config_hash()


def test_synth_table_is_optional_with_default_clock(tmp_path: Path):
    text = VALID.split("[synth]")[0]
    cfg = load_config(write(tmp_path, text))
    assert cfg.clock_mhz == 120.0
    assert cfg.config_hash() == load_config(write(tmp_path, VALID, "b.toml")).config_hash()
    empty_synth = load_config(write(tmp_path, text + "[synth]\n", "c.toml"))
    assert empty_synth == cfg


@pytest.mark.parametrize("change", [
    ("name", "nm24_int8_4x4b"), ("rows", 5), ("cols", 3), ("n", 1), ("m", 8),
    ("act_width", 4), ("weight_width", 4), ("acc_width", 33), ("overflow", "saturate"),
    ("clock_mhz", 100.0),
])
def test_hash_differs_when_a_field_changes(change):
    cfg = load_config(REPO / DEFAULT_EXAMPLE)
    other = dataclasses.replace(cfg, **{change[0]: change[1]})
    assert other != cfg
    assert other.config_hash() != cfg.config_hash()


def test_config_is_frozen_and_validates_on_construction():
    cfg = load_config(REPO / DEFAULT_EXAMPLE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.rows = 8  # type: ignore[misc]
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(cfg, n=5)
    assert info.value.field == "sparsity.nm"
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(cfg, rows=True)
    assert info.value.field == "array.rows"


def test_saturate_and_other_valid_variants(tmp_path: Path):
    text = edit('overflow = "wrap"', 'overflow = "saturate"')
    text = edit('nm = "2:4"', 'nm = "8:16"', text)
    text = edit("acc_width = 32", "acc_width = 48", text)
    text = edit("rows = 4", "rows = 64", text)
    text = edit("cols = 4", "cols = 1", text)
    text = edit("clock_mhz = 120.0", "clock_mhz = 1000", text)
    cfg = load_config(write(tmp_path, text))
    assert (cfg.overflow, cfg.n, cfg.m, cfg.acc_width, cfg.rows, cfg.cols) == (
        "saturate", 8, 16, 48, 64, 1)
    assert cfg.clock_mhz == 1000.0 and isinstance(cfg.clock_mhz, float)


def test_acc_width_lower_bound_follows_widths(tmp_path: Path):
    text = edit("act_width = 8", "act_width = 4")
    text = edit("weight_width = 8", "weight_width = 2", text)
    text = edit("acc_width = 32", "acc_width = 6", text)
    assert load_config(write(tmp_path, text)).acc_width == 6


# ------------------------------------------------------------------------------ errors


def check_error(err: ConfigError, field: str, expect_allowed: bool = True):
    msg = str(err)
    assert err.field == field
    assert "\n" not in msg and "\r" not in msg
    assert len(msg.splitlines()) == 1
    assert f": {field}: " in msg
    if expect_allowed:
        assert "allowed" in msg
        assert "; allowed: " in msg


UNKNOWN_KEY = [
    pytest.param(edit('overflow = "wrap"', 'overflow = "wrap"\nfoo = 1'), "pe.foo",
                 "unknown key", id="pe.foo"),
    pytest.param(VALID + "\n[foo]\nbar = 1\n", "foo", "unknown table", id="unknown-table"),
    pytest.param("top = 1\n" + VALID, "top", "unknown key", id="unknown-top-key"),
    pytest.param(edit("rows = 4", "rows = 4\ndepth = 3"), "array.depth", "unknown key",
                 id="array.depth"),
    pytest.param(edit("nm = \"2:4\"", "nm = \"2:4\"\norder = \"row\""), "sparsity.order",
                 "unknown key", id="sparsity.order"),
    pytest.param(VALID + "freq = 3\n", "synth.freq", "unknown key", id="synth.freq"),
    pytest.param(VALID + "[pe.extra]\nx = 1\n", "pe.extra", "unknown table", id="pe.extra-table"),
]

MISSING_KEY = [
    pytest.param(edit('name = "nm24_int8_4x4"\n', ""), "name", id="name"),
    pytest.param(edit("rows = 4\n", ""), "array.rows", id="array.rows"),
    pytest.param(edit("cols = 4\n", ""), "array.cols", id="array.cols"),
    pytest.param(edit('dataflow = "output_stationary"\n', ""), "array.dataflow", id="dataflow"),
    pytest.param(edit('nm = "2:4"\n', ""), "sparsity.nm", id="sparsity.nm"),
    pytest.param(edit('[sparsity]\nnm = "2:4"\n', ""), "sparsity", id="sparsity-table"),
    pytest.param(edit('kind = "int"\n', ""), "pe.kind", id="pe.kind"),
    pytest.param(edit("act_width = 8\n", ""), "pe.act_width", id="pe.act_width"),
    pytest.param(edit("weight_width = 8\n", ""), "pe.weight_width", id="pe.weight_width"),
    pytest.param(edit("acc_width = 32\n", ""), "pe.acc_width", id="pe.acc_width"),
    pytest.param(edit('overflow = "wrap"\n', ""), "pe.overflow", id="pe.overflow"),
]

WRONG_TYPE = [
    pytest.param(edit("rows = 4", 'rows = "4"'), "array.rows", id="rows-string"),
    pytest.param(edit("rows = 4", "rows = true"), "array.rows", id="rows-bool"),
    pytest.param(edit("cols = 4", "cols = 4.0"), "array.cols", id="cols-float"),
    pytest.param(edit('name = "nm24_int8_4x4"', "name = 7"), "name", id="name-int"),
    pytest.param(edit('nm = "2:4"', "nm = 24"), "sparsity.nm", id="nm-int"),
    pytest.param(edit('nm = "2:4"', "nm = [2, 4]"), "sparsity.nm", id="nm-array"),
    pytest.param(edit("act_width = 8", "act_width = false"), "pe.act_width", id="act-bool"),
    pytest.param(edit("acc_width = 32", 'acc_width = "32"'), "pe.acc_width", id="acc-string"),
    pytest.param(edit('kind = "int"', "kind = 1"), "pe.kind", id="kind-int"),
    pytest.param(edit('overflow = "wrap"', "overflow = true"), "pe.overflow", id="overflow-bool"),
    pytest.param(edit('dataflow = "output_stationary"', "dataflow = 0"), "array.dataflow",
                 id="dataflow-int"),
    pytest.param(edit("clock_mhz = 120.0", 'clock_mhz = "120"'), "synth.clock_mhz",
                 id="clock-string"),
    pytest.param(edit("clock_mhz = 120.0", "clock_mhz = true"), "synth.clock_mhz",
                 id="clock-bool"),
    pytest.param(edit("[array]\nrows = 4\ncols = 4\ndataflow = \"output_stationary\"\n",
                      "array = 4\n"), "array", id="array-not-table"),
]


def _with_nm(nm: str) -> str:
    return edit('nm = "2:4"', f'nm = "{nm}"')


N_GREATER_THAN_M = [pytest.param(_with_nm(nm), id=nm) for nm in ("5:4", "3:2", "9:8", "17:16")]
M_UNSUPPORTED = [pytest.param(_with_nm(nm), m, id=nm)
                 for nm, m in (("2:3", 3), ("1:1", 1), ("2:32", 32), ("1:6", 6), ("0:0", 0))]
N_BELOW_ONE = [pytest.param(_with_nm(nm), id=nm) for nm in ("0:4", "0:2", "00:16")]
NM_MALFORMED = [pytest.param(_with_nm(nm), id=repr(nm))
                for nm in ("2/4", "2:", ":4", "a:b", "", "2:4:8", "-1:4", "2 : 4", "2:4 ", "½:4")]

WIDTH_OUT_OF_RANGE = [
    pytest.param("act_width = 8", "act_width = 1", "pe.act_width", id="act-1"),
    pytest.param("act_width = 8", "act_width = 17", "pe.act_width", id="act-17"),
    pytest.param("weight_width = 8", "weight_width = 1", "pe.weight_width", id="weight-1"),
    pytest.param("weight_width = 8", "weight_width = 17", "pe.weight_width", id="weight-17"),
    pytest.param("weight_width = 8", "weight_width = -8", "pe.weight_width", id="weight-neg"),
    pytest.param("acc_width = 32", "acc_width = 15", "pe.acc_width", id="acc-below-sum"),
    pytest.param("acc_width = 32", "acc_width = 49", "pe.acc_width", id="acc-49"),
]

ROWS_COLS_OUT_OF_RANGE = [
    pytest.param("rows = 4", "rows = 0", "array.rows", id="rows-0"),
    pytest.param("rows = 4", "rows = 65", "array.rows", id="rows-65"),
    pytest.param("rows = 4", "rows = -1", "array.rows", id="rows-neg"),
    pytest.param("cols = 4", "cols = 0", "array.cols", id="cols-0"),
    pytest.param("cols = 4", "cols = 65", "array.cols", id="cols-65"),
]

BAD_NAMES = ["4x4", "nm-24", "a b", "", "nm24.top", "module", "logic", "always_ff", "wire",
             "interconnect", "nm$24", "\\escaped", "é"]

UNKNOWN_CHOICE = [
    pytest.param('dataflow = "output_stationary"', 'dataflow = "row_stationary"',
                 "array.dataflow", "weight_stationary", id="dataflow"),
    pytest.param('kind = "int"', 'kind = "fp8"', "pe.kind", "'int'", id="kind"),
    pytest.param('overflow = "wrap"', 'overflow = "clamp"', "pe.overflow", "saturate",
                 id="overflow"),
    pytest.param('overflow = "wrap"', 'overflow = "Wrap"', "pe.overflow", "wrap",
                 id="overflow-case"),
]

BAD_CLOCKS = ["0.5", "0", "1001", "-120", "nan", "inf", "1000.0001"]


def _error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    return info.value


@pytest.mark.parametrize("text, field, fragment", UNKNOWN_KEY)
def test_unknown_key(tmp_path, text, field, fragment):
    err = _error(tmp_path, text)
    check_error(err, field)
    assert fragment in str(err)


def test_unknown_key_lists_allowed_keys(tmp_path):
    err = _error(tmp_path, edit('overflow = "wrap"', 'overflow = "wrap"\nfoo = 1'))
    for key in ("kind", "act_width", "weight_width", "acc_width", "overflow"):
        assert key in err.allowed
    err = _error(tmp_path, VALID + "[foo]\n")
    for key in ("name", "array", "sparsity", "pe", "synth"):
        assert key in err.allowed


@pytest.mark.parametrize("text, field", MISSING_KEY)
def test_missing_required_key(tmp_path, text, field):
    err = _error(tmp_path, text)
    check_error(err, field)
    assert "missing" in str(err)


@pytest.mark.parametrize("text, field", WRONG_TYPE)
def test_wrong_type(tmp_path, text, field):
    err = _error(tmp_path, text)
    check_error(err, field)
    assert "expected" in str(err)


@pytest.mark.parametrize("text", N_GREATER_THAN_M)
def test_n_greater_than_m(tmp_path, text):
    err = _error(tmp_path, text)
    check_error(err, "sparsity.nm")
    assert "exceeds" in str(err)


@pytest.mark.parametrize("text, m", M_UNSUPPORTED)
def test_m_not_supported(tmp_path, text, m):
    err = _error(tmp_path, text)
    check_error(err, "sparsity.nm")
    assert f"M={m} is not supported; allowed: M in {{2, 4, 8, 16}}" in str(err)


def test_m_error_matches_documented_example(tmp_path):
    path = write(tmp_path, _with_nm("2:3"), "x.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: sparsity.nm: M=3 is not supported; allowed: M in {{2, 4, 8, 16}}")


@pytest.mark.parametrize("text", N_BELOW_ONE)
def test_n_below_one(tmp_path, text):
    err = _error(tmp_path, text)
    check_error(err, "sparsity.nm")
    assert "N=0" in str(err)


@pytest.mark.parametrize("text", NM_MALFORMED)
def test_nm_malformed(tmp_path, text):
    err = _error(tmp_path, text)
    check_error(err, "sparsity.nm")
    assert "malformed" in str(err) and "N:M" in str(err)


@pytest.mark.parametrize("old, new, field", WIDTH_OUT_OF_RANGE)
def test_width_out_of_range(tmp_path, old, new, field):
    err = _error(tmp_path, edit(old, new))
    check_error(err, field)
    assert "out of range" in str(err)


def test_acc_width_range_names_its_dependence(tmp_path):
    text = edit("act_width = 8", "act_width = 12")
    text = edit("weight_width = 8", "weight_width = 12", text)
    text = edit("acc_width = 32", "acc_width = 20", text)
    err = _error(tmp_path, text)
    check_error(err, "pe.acc_width")
    msg = str(err)
    assert "24..48" in msg and "act_width" in msg and "weight_width" in msg


@pytest.mark.parametrize("old, new, field", ROWS_COLS_OUT_OF_RANGE)
def test_rows_cols_out_of_range(tmp_path, old, new, field):
    err = _error(tmp_path, edit(old, new))
    check_error(err, field)
    assert "1..64" in str(err)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_module_name(tmp_path, name):
    err = _error(tmp_path, edit('name = "nm24_int8_4x4"', f"name = '{name}'"))  # TOML literal
    check_error(err, "name")
    assert "Verilog" in str(err)


@pytest.mark.parametrize("name", ["module", "logic", "always_ff", "wire"])
def test_keyword_name_says_keyword(tmp_path, name):
    err = _error(tmp_path, edit('name = "nm24_int8_4x4"', f'name = "{name}"'))
    assert "keyword" in err.problem


@pytest.mark.parametrize("name", ["_top", "Module", "nm24_int8_4x4", "a1", "LOGIC"])
def test_good_module_names(tmp_path, name):
    cfg = load_config(write(tmp_path, edit('name = "nm24_int8_4x4"', f'name = "{name}"')))
    assert cfg.name == name


@pytest.mark.parametrize("old, new, field, allowed_value", UNKNOWN_CHOICE)
def test_unknown_choice(tmp_path, old, new, field, allowed_value):
    err = _error(tmp_path, edit(old, new))
    check_error(err, field)
    assert allowed_value in err.allowed


@pytest.mark.parametrize("clock", BAD_CLOCKS)
def test_clock_out_of_range(tmp_path, clock):
    err = _error(tmp_path, edit("clock_mhz = 120.0", f"clock_mhz = {clock}"))
    check_error(err, "synth.clock_mhz")
    assert "1..1000" in str(err)


# ---------------------------------------------------------------------- file-level errors


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    check_error(err, "file", expect_allowed=False)
    assert str(path) in err.problem


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    check_error(info.value, "file", expect_allowed=False)


@pytest.mark.parametrize("text, line", [
    pytest.param('name = "x"\n[array]\nrows = = 4\n', 3, id="double-equals"),
    pytest.param('name = "unterminated\n', 1, id="unterminated-string"),
    pytest.param(VALID + "[array]\n", 21, id="duplicate-table"),
])
def test_toml_syntax_error(tmp_path, text, line):
    err = _error(tmp_path, text)
    check_error(err, "file", expect_allowed=False)
    assert f"line {line}" in str(err) and "column" in str(err)


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    check_error(info.value, "file", expect_allowed=False)


# ---------------------------------------------------------------- message formatting


def test_newlines_in_values_and_keys_never_reach_the_message(tmp_path):
    err = _error(tmp_path, edit('name = "nm24_int8_4x4"', 'name = "a\\nb"'))
    check_error(err, "name")
    err = _error(tmp_path, edit('kind = "int"', 'kind = "int"\n"fo\\no" = 1'))
    assert "\n" not in str(err) and err.field.startswith("pe.")
    err = ConfigError("src\nfile", "pe.\nx", "line one\nline two", "a\r\nb")
    assert "\n" not in str(err) and "\r" not in str(err)


def test_parse_config_default_source_and_non_mapping():
    good = load_config(REPO / DEFAULT_EXAMPLE).to_dict()
    bad = dict(good, array=dict(good["array"], rows=0))
    with pytest.raises(ConfigError) as info:
        parse_config(bad)
    assert str(info.value).startswith("<config>: array.rows: ")
    with pytest.raises(ConfigError) as info:
        parse_config(bad, source="mine.toml")
    assert str(info.value).startswith("mine.toml: array.rows: ")
    with pytest.raises(ConfigError):
        parse_config([1, 2])  # type: ignore[arg-type]


def test_config_error_is_an_exception_with_attributes():
    err = ConfigError("x.toml", "pe.kind", "unknown value 'fp8'", "'int'")
    assert isinstance(err, Exception)
    assert (err.source, err.field, err.problem, err.allowed) == (
        "x.toml", "pe.kind", "unknown value 'fp8'", "'int'")
    assert str(err) == "x.toml: pe.kind: unknown value 'fp8'; allowed: 'int'"
    assert str(ConfigError("x.toml", "file", "gone")) == "x.toml: file: gone"
