"""Checks that an output directory can be written, before a command writes anything into it.

`output_dir_problem` says, in one phrase, why a path cannot be used as an output directory (or
``None`` when it can): empty, a name longer than the file system allows, an existing file or
device, a path below a file, or a directory the process cannot create files in (tried, not
guessed from permission bits: root passes those, and /proc refuses whatever they say). The check
writes nothing: the probe directory it makes to test writability is removed at once.
"""
import errno
import os
import pathlib
import tempfile

ALLOWED = "a directory that exists or can be created, and can be written"


def _name_max(directory: pathlib.Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _existing_ancestor(path: pathlib.Path) -> pathlib.Path:
    """The nearest ancestor of `path` (itself included) that exists (as anything)."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return pathlib.Path(path.anchor or ".")


def _shown(text: str) -> str:
    """`text` quoted, its middle elided when long (a message stays one readable line)."""
    return repr(text if len(text) <= 80 else f"{text[:40]}...{text[-30:]}")


def output_dir_problem(path) -> str | None:
    """Why `path` cannot be an output directory, as a phrase naming the path; None when it can."""
    raw = os.fspath(path)
    text = _shown(raw)
    if raw == "":
        return "is empty"
    absolute = pathlib.Path(os.path.abspath(raw))
    anchor = _existing_ancestor(absolute)
    name_max = _name_max(anchor if anchor.is_dir() else anchor.parent)
    for part in absolute.parts[1:]:
        if len(os.fsencode(part)) > name_max:
            return (f"{text} has a name of {len(os.fsencode(part))} bytes "
                    f"({part[:24]}...); allowed: at most {name_max} bytes per name")
    if anchor == absolute:
        if not absolute.is_dir():
            return f"{text} exists and is not a directory"
    elif not anchor.is_dir():
        return f"{text} lies below {str(anchor)!r}, which is not a directory"
    try:
        probe = tempfile.mkdtemp(prefix=".nmforge-probe-", dir=anchor)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        if error.errno in (errno.ENOENT, errno.EPERM, errno.EACCES, errno.EROFS):
            reason = f"cannot create files in {str(anchor)!r}: {reason}"
        return f"{text}: {reason}"
    os.rmdir(probe)
    return None


def check_output_dir(path, option="-o/--output"):
    """Raise ValueError ``"<option>: <problem>; allowed: ..."`` when `path` cannot be an output
    directory (see `output_dir_problem`)."""
    problem = output_dir_problem(path)
    if problem is not None:
        if "allowed:" not in problem:
            problem += f"; allowed: {ALLOWED}"
        raise ValueError(f"{option}: {problem}")
