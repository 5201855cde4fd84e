"""The datasheet `nmforge generate` writes beside the manifest: Markdown, HTML and WaveDrom SVG
timing diagrams, stating every arithmetic and interface rule a user would otherwise have to find
by experiment (issue 9)."""
import json
import re

import pytest

from conftest import EXAMPLES
from nmforge.cli import main

FP32_DESIGN = """\
name = "fp32acc_bf16_e5m2_2x2"
[array]
rows = 2
cols = 2
dataflow = "output_stationary"
[sparsity]
nm = "2:4"
[pe]
kind = "fp"
act_format = "bf16"
weight_format = "fp8_e5m2"
accumulate = "fp32"
"""

# Per design: phrases that must appear, each naming one rule of the list.
COMMON = {
    "reset length": r"hold it high for at least 1 rising edge",
    "ports and offsets": r"\| field \| bit offset \| width",
    "latency": r"latency: \d+ cycles",
    "throughput": r"throughput: one act beat and one weight beat per cycle",
    "timing diagram": r"!\[input\]\(datasheet-input\.svg\)",
}
RULES = {
    "rt48_int8_4x4": {
        "saturation step by step in K order": r"after every beat, in K order",
        "saturated result depends on the order": r"depends on the order of K",
        "partial sum can saturate": r"partial sum can saturate while the exact total is in range",
        "pattern id is the position": r"position in `parameters\.patterns`",
        "dense indices": r"\| 0 \| dense \| 4 \| one group of N = 4 elements; indices 0\.\.3",
        "dense as groups of one is malformed": r"groups of one counts every beat as malformed",
        "index convention per pattern": r"\| 4 \| 1:8 \| 32 \| .*index 0\.\.7",
    },
    "fp32acc_bf16_e5m2_2x2": {
        "each beat's products summed first": r"the beat's sum s\[b\]",
        "FP32 addition order": r"acc\[b mod L\]",
        "lanes explained": r"L = 7 lanes \(`pe\.lanes`",
        "lanes summed 0..L-1 at the end": r"\(acc\[0\] \+ acc\[1\]\) \+ acc\[2\]",
        "NaN is 0x7FC00000": r"every NaN result is the quiet NaN 0x7FC00000",
        "exact zero is +0 even from -0": r"exact zero sum is \+0, even when every product is -0",
        "inf for bf16 / E5M2": r"infinities here: bf16, fp8_e5m2",
        "inf sets overflow": r"too large for FP32 is \+-inf and sets `overflow`",
    },
    "mxfp8_nm24_2x2": {
        "scale sampled on last beat": r"sampled on the block's LAST beat",
        "blocks rounded before adding": r"rounded ONCE to FP32",
        "1 ulp difference": r"differ by 1 ulp",
        "+inf block + -inf block": r"\+inf block plus a -inf block gives NaN",
        "block overflow sets overflow": r"`overflow` is set on a block overflow",
    },
    "posit8_nm24_2x2": {
        "quire overflow differs from SoftPosit": r"differs from SoftPosit, whose quire wraps",
    },
}


@pytest.fixture(scope="module")
def datasheets(tmp_path_factory):
    base = tmp_path_factory.mktemp("datasheets")
    (base / "fp32.toml").write_text(FP32_DESIGN)
    configs = {"rt48_int8_4x4": EXAMPLES / "rt48_int8_4x4.toml", "fp32acc_bf16_e5m2_2x2": base / "fp32.toml",
               "mxfp8_nm24_2x2": EXAMPLES / "mxfp8_nm24_2x2.toml",
               "posit8_nm24_2x2": EXAMPLES / "posit8_nm24_2x2.toml"}
    out = {}
    for name, config in configs.items():
        assert main(["generate", str(config), "-o", str(base / name)]) == 0
        out[name] = base / name
    return out


@pytest.mark.parametrize("design", sorted(RULES))
def test_datasheet_states_every_rule(datasheets, design):
    folder = datasheets[design]
    text = (folder / "datasheet.md").read_text()
    missing = [rule for rule, pattern in {**COMMON, **RULES[design]}.items()
               if not re.search(pattern, text)]
    assert not missing, f"{design}: datasheet does not state {missing}"


def test_datasheet_matches_its_manifest(datasheets):
    folder = datasheets["mxfp8_nm24_2x2"]
    manifest = json.loads((folder / "manifest.json").read_text())
    text = (folder / "datasheet.md").read_text()
    assert f"latency: {manifest['latency_cycles']} cycles" in text
    for port in manifest["ports"]:
        assert f"| `{port['name']}` | {port['direction']} | {port['width']} |" in text
    side = manifest["interfaces"]["act"]["payload"]["fields"]["side"]
    assert f"| `side[0]` | {side['offset']} | 8 |" in text
    assert set(manifest["semantics"]) <= set(re.findall(r"^- \*\*(.+?)\*\*", text, re.M))


def test_datasheet_html_has_the_diagrams_inline(datasheets):
    folder = datasheets["rt48_int8_4x4"]
    page = (folder / "datasheet.html").read_text()
    assert page.count("<svg") == 2 and "<table>" in page and "Run-time pattern table" in page
    for name in ("input", "result"):
        svg = (folder / f"datasheet-{name}.svg").read_text()
        assert svg.startswith("<svg") and "WaveDrom" in svg and "valid" in svg


def test_the_readmes_example_datasheet_is_what_generate_writes(datasheets):
    """docs/datasheet-rt48_int8_4x4/ (linked from the README) equals today's generated files."""
    docs = EXAMPLES.parent / "docs" / "datasheet-rt48_int8_4x4"
    readme = (EXAMPLES.parent / "README.md").read_text()
    assert "(docs/datasheet-rt48_int8_4x4/datasheet.md)" in readme, "the README links to the example"
    for name in ("datasheet.md", "datasheet-input.svg", "datasheet-result.svg"):
        assert (docs / name).read_text() == (datasheets["rt48_int8_4x4"] / name).read_text(), \
            f"{docs / name} is stale: copy it from `nmforge generate examples/rt48_int8_4x4.toml`"
