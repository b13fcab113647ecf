"""File-system helpers shared by every stage: hashing and all-or-nothing writes.

Outputs are written to a temporary file in the destination directory and renamed into place,
so an interrupted or failed write never leaves a half-written file and never clobbers the
previous version. ``os.replace`` is atomic on POSIX within one file system, which is why the
temporary file lives beside the target rather than in ``/tmp``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from resnet8_onnx.support.errors import (
    InputNotFoundError,
    InvalidInputError,
    OutputError,
    OutputExistsError,
    interrupts_deferred,
    raise_if_interrupted,
)

_CHUNK = 1 << 20
_LOCK_NAME = ".resnet8-onnx.lock"  # hidden, empty, left in report directories on purpose
# (roots, pending probes) of the probes_deferred() blocks in force
_deferring: list[tuple[tuple[Path, ...], list[tuple[Path, Path]]]] = []
# Outputs this process renamed into place, complete (what an interrupted command kept).
_published: list[Path] = []


def note_published(path: str | os.PathLike[str]) -> None:
    """Record that ``path`` was renamed into place complete; call with interrupts deferred,
    so an interrupt cannot fall between the rename and the record."""
    _published.append(Path(path))


def forget_published(path: str | os.PathLike[str]) -> None:
    """``path`` was taken back (a failed report set removes what it wrote)."""
    with contextlib.suppress(ValueError):
        _published.remove(Path(path))


def published() -> list[Path]:
    """The complete outputs this process wrote that are still in place, in write order."""
    return [p for p in dict.fromkeys(_published) if os.path.lexists(p)]


def reset_published() -> None:
    """Start a new command's account of its outputs (the CLI, once per invocation)."""
    _published.clear()


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks so large files do not load into memory."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def check_input_file(path: str | os.PathLike[str], what: str = "model") -> Path:
    """``path`` is a readable file, or one line saying what it is instead.

    Every command taking a model asks this first, so a directory (or a missing or unreadable
    file) gets the same message and exit code from each of them, before any data is searched.
    """
    p = Path(path)
    if p.is_dir():
        raise InvalidInputError(f"{p}: is a directory, not a {what} file")
    if not p.is_file():
        raise InputNotFoundError(f"{p}: {what} file not found")
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InvalidInputError(f"{p}: cannot read the {what} file ({reason})") from None
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _cannot_write(target: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or type(exc).__name__
    return OutputError(f"{target}: cannot write ({reason})")


def _probe_directory(directory: Path, target: Path) -> None:
    """Create and remove a temporary file in ``directory``: the only honest writability test.

    ``os.access`` answers from permission bits, and root passes those everywhere, yet root
    still cannot create files in sysfs, on a root-squashed NFS export or under a mandatory
    access policy. Probing here turns those into an early, clear error instead of a failure
    after the expensive work.
    """
    for roots, pending in _deferring:
        if any(_real(directory).is_relative_to(root) for root in roots):
            pending.append((directory, target))
            return
    where = "directory" if target == directory else f"directory {directory}"
    if not os.access(directory, os.W_OK):
        raise OutputError(f"{target}: {where} is not writable")
    try:
        with interrupts_deferred():
            fd, probe = tempfile.mkstemp(prefix=".resnet8-onnx-probe.", suffix=".part",
                                         dir=directory)
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"{target}: cannot write in {where} ({reason})") from None


@contextlib.contextmanager
def probes_deferred(
    roots: Iterable[str | os.PathLike[str]],
) -> Iterator[list[tuple[Path, Path]]]:
    """Within the block, a probe of a directory under one of ``roots`` is noted, not made.

    An output refused because it lies inside the data set must leave the data directory as it
    was (not even its mtime changed by a probe file), yet which folder under ``--data-dir``
    the data set is, is known only once it is found. The checks that touch nothing run now;
    the noted probes (yielded) are made by :func:`run_probes` once the data set is known and
    the output was not refused.
    """
    pending: list[tuple[Path, Path]] = []
    _deferring.append((tuple(_real(r) for r in roots), pending))
    try:
        yield pending
    finally:
        _deferring.pop()


def run_probes(pending: Iterable[tuple[Path, Path]]) -> None:
    """Make the probes :func:`probes_deferred` noted (an unwritable directory: exit 8)."""
    for directory, target in pending:
        _probe_directory(directory, target)


def check_writable(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Fail early, before any expensive work, if ``path`` cannot be written.

    Checked up front so a ten-second conversion does not end in "directory missing".
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.exists() and p.is_dir():
        raise OutputError(f"{p}: is a directory, expected a file path")
    if p.exists() and not force:
        raise OutputExistsError(p)
    if not parent.is_dir():
        raise OutputError(f"{p}: directory {parent} does not exist")
    _probe_directory(parent, p)
    return p


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], *, force: bool = False, mode: str = "wb"
) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only on success.

    On any exception (including KeyboardInterrupt) the temporary file is removed and the
    previous content of ``path``, if any, is left untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError("atomic_write supports mode 'wb' or 'w'")
    target = check_writable(path, force=force)
    tmp: str | None = None
    try:
        with interrupts_deferred():
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                           dir=target.parent)
            except OSError as exc:
                raise _cannot_write(target, exc) from None
        with contextlib.suppress(OSError):  # some file systems (vfat, SMB) refuse chmod
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would surprise report readers
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                raise _cannot_write(target, exc) from None
        with interrupts_deferred():  # renamed and recorded, or neither
            _publish(tmp, target, force=force)
            note_published(target)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def _publish(tmp: str, target: Path, *, force: bool) -> None:
    """Rename the finished temporary file onto ``target`` (never clobbering without force)."""
    exists = OutputExistsError(target)
    try:
        if force:
            os.replace(tmp, target)
            return
        # link() fails if the target appeared meanwhile (another process): no clobbering.
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise exists from None
        except OSError:  # file systems without hard links: best effort
            if target.exists():
                raise exists from None
            os.replace(tmp, target)
        else:
            os.unlink(tmp)
    except OutputError:
        raise
    except OSError as exc:
        raise _cannot_write(target, exc) from None


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, force: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; see :func:`atomic_write`."""
    with atomic_write(path, force=force) as f:
        try:
            f.write(data)
        except OSError as exc:  # ENOSPC, EIO, quota: the output's problem, not a bug
            raise _cannot_write(Path(path), exc) from None
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, force: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write`."""
    with atomic_write(path, force=force, mode="w") as f:
        try:
            f.write(text)
        except OSError as exc:
            raise _cannot_write(Path(path), exc) from None
    return Path(path)


@contextlib.contextmanager
def exclusive_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an advisory lock on a report directory while writing a set of files into it.

    Two processes writing reports into one directory would otherwise interleave their files;
    the second one gets a clear refusal instead.
    """
    import fcntl

    directory = Path(path)
    try:
        lock = open(directory / _LOCK_NAME, "a")  # noqa: SIM115 - closed below
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"{directory}: cannot create the lock file ({reason})") from None
    with lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"{directory}: another process is writing reports here") from None
        try:
            yield directory
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def report_directory(
    path: str | os.PathLike[str], targets: Iterable[str | os.PathLike[str]]
) -> Iterator[Path]:
    """Create ``path`` if needed and hold its lock while a command writes ``targets`` into it.

    When the block fails or is interrupted, the targets this invocation created are removed,
    and so is the directory if this invocation created it: the same command can simply be run
    again, without ``--force``. Targets that existed before are left alone (with ``--force``
    a finished one may already be the new version; none is ever half-written). The lock file
    goes with a directory this invocation created, unlinked while still locked, so any
    process that opened it meanwhile is refused rather than locking a stale file.
    """
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{directory}: exists and is not a directory")
    if not directory.parent.is_dir():
        raise OutputError(f"{directory}: parent directory {directory.parent} does not exist")
    planned = [Path(t) for t in targets]
    created = False
    try:
        try:
            with interrupts_deferred():  # "created" must be recorded with the directory
                directory.mkdir()
                created = True
        except FileExistsError:
            pass
        except OSError as exc:
            raise OutputError(f"{directory}: cannot create directory ({exc.strerror})") from None
        _probe_directory(directory, directory)
        with exclusive_directory(directory):
            existing = {t for t in planned if os.path.lexists(t)}
            try:
                yield directory
                raise_if_interrupted()  # a signal swallowed by a finaliser still stops us
            except BaseException:
                with interrupts_deferred():
                    for target in planned:
                        if target not in existing:
                            with contextlib.suppress(OSError):
                                target.unlink()
                            forget_published(target)
                    if created:
                        with contextlib.suppress(OSError):
                            (directory / _LOCK_NAME).unlink()
                        with contextlib.suppress(OSError):
                            directory.rmdir()  # only if empty: never anyone else's files
                raise
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise


def prepare_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create the report directory (not its parents): a typo in a parent path is an error."""
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{directory}: exists and is not a directory")
    if not directory.parent.is_dir():
        raise OutputError(f"{directory}: parent directory {directory.parent} does not exist")
    try:
        directory.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{directory}: cannot create directory ({exc.strerror})") from None
    _probe_directory(directory, directory)
    return directory


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """Everything :func:`prepare_output_dir` checks, without creating anything.

    For commands that write their reports only at the end: they can refuse a bad ``--out``
    before the expensive work, yet leave no empty directory behind when the work fails.
    """
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{directory}: exists and is not a directory")
    if directory.is_dir():
        _probe_directory(directory, directory)
        return directory
    if not directory.parent.is_dir():
        raise OutputError(f"{directory}: parent directory {directory.parent} does not exist")
    try:
        _probe_directory(directory.parent, directory)
    except OutputError:
        raise OutputError(f"{directory}: cannot create directory in {directory.parent} "
                          "(not writable)") from None
    return directory


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(os.path.expanduser(path)))


def _same_file(a: Path, b: Path) -> bool:
    """Same file by identity when both exist (hard links, symlinks), else by resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return _real(a) == _real(b)


def refuse_overwriting_inputs(
    outputs: Iterable[str | os.PathLike[str] | None],
    inputs: Iterable[str | os.PathLike[str] | None],
) -> None:
    """Refuse, with or without ``--force``, an output that would replace one of the inputs.

    An output is refused when it is an input file (compared by identity, so a symlink or hard
    link to the model counts), when it lies inside an input directory (a data set directory:
    a new ``.png`` in an image folder would become one more test image), or when two outputs
    name the same file. ``None`` and ``-`` (stdout) entries are ignored. Exit 8: the output
    cannot be written, however it is named.
    """
    outs = [Path(p) for p in outputs if p is not None and str(p) != "-"]
    ins = [Path(p) for p in inputs if p is not None]
    for i, out in enumerate(outs):
        for other in outs[:i]:
            if _same_file(out, other):
                raise OutputError(f"{out}: named twice as an output ({other})")
        real = _real(out)
        for source in ins:
            if _same_file(out, source):
                raise OutputError(f"{out}: output would overwrite the input {source}")
            if source.is_dir() and real.is_relative_to(_real(source)):
                raise OutputError(f"{out}: output would be written into the input "
                                  f"directory {source}")


def recorded_path(path: str | os.PathLike[str] | None) -> str | None:
    """How a record names a file: absolute and resolved, so a record read later, from another
    directory, still says where the file is. A name that is no existing file (an in-memory
    model's label) is kept as given."""
    if path is None or str(path) == "":
        return path if path is None else ""
    p = Path(path)
    return str(p.resolve()) if p.exists() else str(path)
