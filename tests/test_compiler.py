"""The model compiler (nmforge.compiler): import against torch, N:M pruning, INT8 quantization
and the integer reference, on small untrained models (fast) and the trained digits MLP."""
import numpy as np
import pytest

from nmforge.compiler import CompileError, compile_model
from nmforge.compiler.passes import is_nm, nm_mask
from nmforge.compiler.quantize import dyadic
from nmforge.compiler.reference import gemm_accumulators, run_int
from nmforge.gen.config import load_config

from conftest import EXAMPLES

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

NM24 = EXAMPLES / "nm24_int8_8x8.toml"
RT48 = EXAMPLES / "rt48_int8_4x4.toml"


class SmallCNN(torch.nn.Module):
    """Conv (K = 9, padded), ReLU, max pool, flatten, Linear, a residual add, avg pool."""
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.pool = torch.nn.MaxPool2d(2)
        self.avg = torch.nn.AvgPool2d(2)
        self.fc = torch.nn.Linear(32, 16)
        self.res = torch.nn.Linear(16, 16)
        self.head = torch.nn.Linear(16, 10)

    def forward(self, x):
        x = self.avg(self.pool(torch.relu(self.conv(x))))
        h = self.fc(torch.flatten(x, 1))
        return self.head(h + self.res(torch.relu(h)))


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    model = SmallCNN().eval()
    x = torch.randn(64, 1, 8, 8)
    return model, x, compile_model(model, x[:1], load_config(NM24), calibration=x)


def test_import_matches_torch(cnn):
    model, x, compiled = cnn
    ops = [n.op for n in compiled.float_graph.nodes]
    assert ops == ["input", "im2col", "gemm", "to_nchw", "relu", "maxpool", "avgpool", "reshape",
                   "gemm", "relu", "gemm", "add", "gemm"]
    np.testing.assert_allclose(compiled.run_float(x, pruned=False), model(x).detach().numpy(),
                               rtol=1e-5, atol=1e-5)


def test_relu_fused_where_the_gemm_has_one_reader(cnn):
    _, _, compiled = cnn
    gemms = {g.name: g.attrs["relu"] for g in compiled.graph.gemms()}
    assert gemms == {"conv": True, "fc": False, "res": False, "head": False}
    assert [n.op for n in compiled.graph.nodes].count("relu") == 1   # h has two readers


def test_sparsify_prunes_every_gemm_to_2_4_and_pads_k(cnn):
    _, _, compiled = cnn
    for gemm in compiled.graph.gemms():
        w = gemm.attrs["q"]["weight"]
        assert gemm.attrs["pattern"] == (2, 4) and w.shape[0] % 4 == 0 and is_nm(w, 2, 4)
    conv = compiled.graph.node("conv")
    assert conv.attrs["k_pad"] == 12 and not conv.attrs["q"]["weight"][9:].any()


def test_nm_mask_keeps_largest_magnitudes_ties_to_lower_index():
    w = np.array([[0.5, -3.0, 3.0, 0.1], [-2.0, 2.0, 1.0, 1.0]]).T
    assert nm_mask(w, 2, 4).T.tolist() == [[False, True, True, False], [True, True, False, False]]


def test_weights_already_nm_are_kept_exactly():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(16, 8)).eval()
    with torch.no_grad():
        w = model[0].weight
        w.mul_(torch.from_numpy(nm_mask(w.T.numpy(), 1, 4).T.astype(np.float32)))  # 1:4 is also 2:4
    compiled = compile_model(model, torch.randn(4, 16), load_config(NM24))
    gemm = compiled.graph.gemms()[0]
    assert gemm.attrs["already_nm"]
    np.testing.assert_array_equal(gemm.attrs["weight"], model[0].weight.detach().double().numpy().T)


def test_per_layer_patterns_on_a_runtime_design():
    model = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    compiled = compile_model(model, torch.randn(4, 32), load_config(RT48),
                             patterns={"0": "1:8", "2": "2:4"})
    # K padded to the ACT word's K-group N*Mmax = 32, which every pattern's beat span divides
    assert [(g.attrs["pattern"], g.attrs["k_pad"]) for g in compiled.graph.gemms()] == \
        [((1, 8), 32), ((2, 4), 32)]
    assert is_nm(compiled.graph.gemms()[0].attrs["q"]["weight"], 1, 8)


def test_bad_per_layer_pattern_is_one_line():
    model = torch.nn.Sequential(torch.nn.Linear(32, 16))
    with pytest.raises(CompileError) as info:
        compile_model(model, torch.randn(4, 32), load_config(NM24), patterns={"0": "1:8"})
    assert "\n" not in str(info.value) and "allowed: 2:4" in str(info.value)


def test_unsupported_op_names_the_op_and_the_supported_list():
    class Recurrent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(8, 8, batch_first=True)

        def forward(self, x):
            return self.lstm(x)[0][:, -1]

    with pytest.raises(CompileError) as info:
        compile_model(Recurrent(), torch.randn(2, 3, 8), load_config(NM24))
    text = str(info.value)
    assert "\n" not in text and text.startswith("unsupported op aten.")
    assert "LSTM" in text and "supported: " in text and "aten.addmm.default" in text


@pytest.mark.parametrize("real", [1e-4, 0.0123, 0.5, 0.99, 3.7])
def test_dyadic_multiplier_is_close_and_fits(real):
    mult, shift = dyadic(real)
    assert mult < 1 << 16 and abs(mult / 2 ** shift - real) <= real * 2 ** -15


def test_integer_gemms_equal_torch_float64_on_the_same_integers(cnn):
    """Each GEMM's accumulators equal torch's float64 product of the dequantized operands divided
    by the scales (exact: integers below 2^53), and the requantized outputs are within one LSB
    of torch's fake-quantization of that product (the only differences: the dyadic multiplier
    and half-up vs half-even ties)."""
    _, x, compiled = cnn
    record = {}
    compiled.run_reference(x, record)
    for gemm in compiled.graph.gemms():
        q = gemm.attrs["q"]
        x_q = record[gemm.inputs[0]]
        s_in = compiled.graph.node(gemm.inputs[0]).attrs["scale"]
        x_deq = torch.from_numpy(x_q * s_in)
        x_deq = torch.nn.functional.pad(x_deq, (0, gemm.attrs["k_pad"] - x_q.shape[1]))
        w_deq = torch.from_numpy(q["weight"] * q["weight_scale"])
        product = torch.nn.functional.linear(x_deq, w_deq.T).numpy()
        acc = gemm_accumulators(gemm, x_q)
        np.testing.assert_array_equal(acc, np.rint(product / q["acc_scale"]).astype(np.int64))
        if q["requant"]:
            b_deq = torch.from_numpy(q["bias"] * q["acc_scale"])
            s_out = gemm.attrs["scale"]
            fake = torch.fake_quantize_per_tensor_affine(
                (torch.from_numpy(product) + b_deq).float(), s_out, 0, -127, 127)
            if gemm.attrs["relu"]:
                fake = torch.relu(fake)
            diff = np.abs(record[gemm.name] - np.rint(fake.double().numpy() / s_out))
            assert diff.max() <= 1 and diff.mean() < 0.02


def test_integer_model_tracks_the_float_model(cnn):
    _, x, compiled = cnn
    logits = compiled.dequantize(compiled.run_reference(x))
    float_logits = compiled.run_float(x)
    assert np.abs(logits - float_logits).max() < 0.1 * np.abs(float_logits).max()
    assert (logits.argmax(1) == float_logits.argmax(1)).mean() >= 0.9


def test_digits_mlp_int8_2_4_within_one_point_of_float():
    from nmforge.compiler import load_model_file
    from nmforge.compiler.training import accuracy
    import sys
    model_file = load_model_file(EXAMPLES / "models" / "digits_mlp.py")
    dense = sys.modules["nmforge_model_digits_mlp"].dense_model()
    x, y = model_file.test_data()
    compiled = compile_model(model_file.model(), model_file.example_input(), load_config(NM24),
                             calibration=model_file.calibration_data())
    assert all(g.attrs["already_nm"] for g in compiled.graph.gemms())
    float_accuracy = accuracy(dense(x).detach().numpy(), y)
    int_accuracy = accuracy(compiled.run_reference(x), y)
    assert float_accuracy > 0.9
    assert int_accuracy >= float_accuracy - 0.01


# --- programs: emit, golden executor, command line ---------------------------------------------

ACCEL24 = EXAMPLES / "models" / "accel_nm24_int8_8x8.toml"
MODELS = EXAMPLES / "models"


def test_program_on_the_golden_executor_equals_the_reference(cnn):
    """The CNN (im2col, fold, pooling, residual add on the host; chained and stored GEMMs) as a
    program: the golden accelerator executor's integers equal the numpy reference's, and the
    emitted command list has no hazard (checked inside emit_program)."""
    from nmforge.compiler.emit import emit_program
    from nmforge.compiler.runtime import Program, run_program
    _, x, _ = cnn
    model, _, _ = cnn
    compiled = compile_model(model, x[:1], load_config(ACCEL24), calibration=x)
    spec, images = emit_program(compiled, batch=4)
    kinds = [("device" if "device" in s else "host") for s in spec["steps"]]
    assert kinds.count("device") == 4 and spec["batch"] == 4   # conv | fc | res | head
    out, status = run_program(Program(None, spec, images), x[:10].numpy())
    np.testing.assert_array_equal(out, compiled.run_reference(x[:10]))
    assert not status.cmd_error and not status.overflow


def test_buffers_too_small_is_one_line():
    from nmforge.compiler.emit import emit_program
    from nmforge.gen.config import parse_config
    table = load_config(ACCEL24).to_dict()
    table["accelerator"]["weight_depth"] = 8
    model = torch.nn.Sequential(torch.nn.Linear(64, 64))
    compiled = compile_model(model, torch.randn(2, 64), parse_config(table))
    with pytest.raises(CompileError, match=r"^layer 0 weights: needs 128 WEIGHT words, the "
                                           r"design has 8 \(accelerator.weight_depth"):
        emit_program(compiled, 1)


LSTM_MODEL = '''
import torch
class Recurrent(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 8, batch_first=True)
    def forward(self, x):
        return self.lstm(x)[0][:, -1]
def model():
    return Recurrent()
def example_input():
    return torch.randn(2, 3, 8)
'''


def test_cli_unsupported_op_exit_2_nothing_written(tmp_path):
    """In a fresh process (as a user runs it: no pytest capturing torch's warnings), stderr is
    exactly one line."""
    import subprocess
    import sys
    model = tmp_path / "lstm.py"
    model.write_text(LSTM_MODEL)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-c", "import sys; from nmforge.cli import main; "
                          "sys.exit(main(sys.argv[1:]))", "compile", str(model), "--config",
                          str(ACCEL24), "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == ""
    err = run.stderr.strip()
    assert "\n" not in err and err.startswith("nmforge: error: unsupported op aten.")
    assert "LSTM" in err and "supported: " in err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["compile", "missing.py", "--config", str(ACCEL24)], "missing.py: not a Python model file"),
    (["compile", str(MODELS / "digits_mlp.py"), "--config", "nope.toml"], "nope.toml"),
    (["run", "no-such-program"], "no-such-program: not a program directory"),
])
def test_cli_bad_input_is_one_line(argv, message, capsys, tmp_path):
    from nmforge.cli import main
    assert main(argv + (["-o", str(tmp_path / "o")] if argv[0] == "compile" else [])) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
    assert not (tmp_path / "o").exists()


def test_cli_compile_and_run_digits_mlp(tmp_path, capsys):
    """nmforge compile + run --on golden of the 2:4 digits MLP: every output integer equals the
    numpy reference, accuracy within a point of the float model, every array beat useful in the
    first two layers."""
    import json
    import sys
    from nmforge.cli import main
    from nmforge.compiler import load_model_file
    program = tmp_path / "mlp"
    assert main(["compile", str(MODELS / "digits_mlp.py"), "--config", str(ACCEL24),
                 "-o", str(program)]) == 0
    assert main(["run", str(program), "--on", "golden"]) == 0
    report = json.loads((program / "report.json").read_text())
    out = np.load(program / "outputs-golden.npy")
    model_file = load_model_file(MODELS / "digits_mlp.py")
    x, y = model_file.test_data()
    compiled = compile_model(model_file.model(), model_file.example_input(), load_config(ACCEL24),
                             calibration=model_file.calibration_data())
    np.testing.assert_array_equal(out, compiled.run_reference(x))
    dense = sys.modules["nmforge_model_digits_mlp"].dense_model()
    float_accuracy = float((dense(x).detach().numpy().argmax(1) == y).mean())
    assert report["accuracy"] >= float_accuracy - 0.01
    assert [layer["utilization"] for layer in report["layers"]][:2] == [1.0, 1.0]
    passes, row_panels = -(-len(x) // report["batch"]), -(-report["batch"] // 8)
    assert report["array_beats"] == passes * row_panels * (16 * 16 + 8 * 32 + 2 * 16)
    assert report["cycles"] == report["cycle_model"]["cycles"] > report["array_beats"]
    assert "fc1" in capsys.readouterr().out


def _sim_run(tmp_path, design, inputs, patterns=None):
    """Compile the digits MLP for `design` (per-layer `patterns`) and run its first `inputs` test
    images on the simulated accelerator: (outputs, sim figures, golden outputs of the same
    images)."""
    from nmforge.compiler import load_model_file
    from nmforge.compiler.emit import emit_program
    from nmforge.compiler.runtime import Program, predict_cycles, run_program
    from nmforge.compiler.sim import run_on_sim
    model_file = load_model_file(MODELS / "digits_mlp.py")
    x, _ = model_file.test_data()
    compiled = compile_model(model_file.model(), model_file.example_input(),
                             load_config(MODELS / design), calibration=model_file.calibration_data(),
                             patterns=patterns)
    program = Program(None, *emit_program(compiled))
    reports = []
    out, sim = run_on_sim(program, x.numpy()[:inputs], tmp_path, log=lambda line: None,
                          progress=lambda done, total, step: reports.append((done, total)))
    assert reports and reports[-1] == (inputs, inputs), reports   # the bar ends at every input
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)
    golden, status = run_program(program, x.numpy()[:inputs])
    assert sim.get("array_beats") == status.array_beats
    predicted = predict_cycles(program, *sim["recorded"])["cycles"]
    assert abs(predicted - sim["cycles"]) <= 0.05 * sim["cycles"], (predicted, sim["cycles"])
    return out, sim, golden


RUNTIME_MLP = ("accel_rt48_int8_2x4.toml", {"fc1": "1:8", "fc3": "2:4"})


def _mlp_program(design, patterns=None):
    """(compiled, Program, test x, test labels, float accuracy) of the digits MLP for `design`."""
    import sys
    from nmforge.compiler import load_model_file
    from nmforge.compiler.emit import emit_program
    from nmforge.compiler.runtime import Program
    model_file = load_model_file(MODELS / "digits_mlp.py")
    x, y = model_file.test_data()
    compiled = compile_model(model_file.model(), model_file.example_input(),
                             load_config(MODELS / design), calibration=model_file.calibration_data(),
                             patterns=patterns)
    dense = sys.modules["nmforge_model_digits_mlp"].dense_model()
    float_accuracy = float((dense(x).detach().numpy().argmax(1) == y).mean())
    return compiled, Program(None, *emit_program(compiled)), x, np.asarray(y), float_accuracy


def test_per_layer_patterns_program_on_golden_equals_the_reference():
    """The digits MLP on the run-time 4:8 design with fc1 1:8, fc2 the design's 4:8 and fc3 2:4:
    every GEMM command names its layer's pattern, the weights are stored per pattern, and the
    golden executor's integers equal the numpy reference on every test image."""
    from nmforge.compiler.runtime import run_program
    from nmforge.rtl.isa import decode
    design, patterns = RUNTIME_MLP
    compiled, program, x, _, _ = _mlp_program(design, patterns)
    shape = program.shape
    ids = {layer["name"]: layer["pattern_id"] for layer in program.spec["layers"]}
    assert [shape.patterns[ids[name]] for name in ("fc1", "fc2", "fc3")] == [(1, 8), (4, 8), (2, 4)]
    gemms = [decode(int(h, 16))["gemm"]["pattern"] for step in program.spec["steps"]
             if "device" in step for h in step["device"] if int(h, 16) & 0xF == 2]
    assert gemms == [ids["fc1"], ids["fc2"], ids["fc3"]]
    out, status = run_program(program, x.numpy())
    np.testing.assert_array_equal(out, compiled.run_reference(x))
    assert not status.cmd_error and not status.meta_error


def test_fp8_program_on_golden_equals_the_reference():
    """The digits MLP on the FP8 E4M3 design: FP8 codes in the buffers, FP32 results scaled on
    the host; the program's outputs equal the FP8 reference (golden.fp_mac per output) on every
    test image, and the accuracy is within a point of the float model's."""
    from nmforge.compiler.runtime import dequantize, run_program
    compiled, program, x, y, float_accuracy = _mlp_program("accel_fp8_4x4.toml")
    assert [layer["format"] for layer in program.spec["layers"]] == ["fp8_e4m3"] * 3
    out, status = run_program(program, x.numpy())
    np.testing.assert_array_equal(out, compiled.run_reference(x))
    assert not status.cmd_error
    assert float((dequantize(program, out).argmax(1) == y).mean()) >= float_accuracy - 0.01


class ResidualLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.head = torch.nn.Linear(16, 16), torch.nn.Linear(16, 8)

    def forward(self, x):
        return self.head(x + self.fc(x))


def test_fp8_design_refuses_host_ops_on_codes():
    """A residual add (host arithmetic) on the FP8 design is one line naming it and what runs."""
    with pytest.raises(CompileError) as info:
        compile_model(ResidualLinear().eval(), torch.randn(4, 16),
                      load_config(MODELS / "accel_fp8_4x4.toml"))
    text = str(info.value)
    assert "\n" not in text and "host op add" in text and "allowed host ops: input" in text


@pytest.mark.parametrize("design, patterns", [
    pytest.param(*RUNTIME_MLP, id="runtime-1:8,4:8,2:4"),
    pytest.param("accel_fp8_4x4.toml", None, id="fp8", marks=pytest.mark.slow)])
def test_digits_mlp_per_layer_patterns_and_fp8_on_the_simulated_accelerator(tmp_path, design,
                                                                           patterns):
    """A few test images of the digits MLP on Verilator: on the run-time 4:8 design with a
    pattern per layer, and on the FP8 design; tb_accel checks every STORE and the status
    against the golden executor bit for bit."""
    out, sim, golden = _sim_run(tmp_path, design, 8, patterns)
    assert sim["passed"], sim["log"]
    np.testing.assert_array_equal(out, golden)


def test_golden_run_reports_progress_over_inputs_and_layers():
    """run_program's progress: after every step, the inputs done (a batch counts once its last
    step ran) and the step that ran; it ends at every input."""
    from nmforge.compiler.runtime import run_program
    _, program, x, _, _ = _mlp_program("accel_nm24_int8_4x4.toml")
    calls = []
    run_program(program, x.numpy()[:20], progress=lambda *call: calls.append(call))
    assert calls[-1][:2] == (20, 20)
    assert {step for _, _, step in calls} == {"x", "fc1+fc2+fc3"}
    assert [done for done, _, _ in calls] == sorted(done for done, _, _ in calls)
    assert {done for done, _, _ in calls} == {0, *range(program.batch, 20, program.batch), 20}
    assert program.batch < 20   # so a batch boundary is reported before the end


def test_digits_mlp_on_the_simulated_accelerator(tmp_path):
    """A few test images of the 2:4 digits MLP on Verilator (4x4 accelerator): tb_accel checks
    every STORE (the logits) and the status against the golden executor bit for bit."""
    out, sim, golden = _sim_run(tmp_path, "accel_nm24_int8_4x4.toml", 8)
    assert sim["passed"], sim["log"]
    np.testing.assert_array_equal(out, golden)


@pytest.mark.slow
def test_digits_mlp_whole_test_set_on_the_simulated_8x8_accelerator(tmp_path):
    out, sim, golden = _sim_run(tmp_path, "accel_nm24_int8_8x8.toml", 360)
    assert sim["passed"], sim["log"]
    np.testing.assert_array_equal(out, golden)
