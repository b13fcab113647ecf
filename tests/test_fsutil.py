"""fsutil: all-or-nothing writes, early refusals, report directories, and hashing.

Every refusal here is an ``OutputError`` (exit 8) raised before anything is written, and
every failure midway leaves the previous file (if any) and no temporary file behind.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from resnet8_onnx.support import fsutil
from resnet8_onnx.support.errors import OutputError
from test_hardening import LOCK_NAME, read_only_dir


def write(target: Path, data: bytes, *, force: bool = False, then=None) -> None:
    """Write ``data`` through :func:`fsutil.atomic_write`, calling ``then()`` before the end
    of the block (to fail midway, or to act as another process would)."""
    with fsutil.atomic_write(target, force=force) as f:
        f.write(data)
        if then is not None:
            then()


def fail(exc: BaseException):
    def raise_it() -> None:
        raise exc
    return raise_it


def test_digest_of_a_file_of_several_chunks_is_hashlibs(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # crosses the 1 MiB read size three times
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert fsutil.file_digest(path) == hashlib.sha256(data).hexdigest()
    assert fsutil.file_digest(path, "md5") == hashlib.md5(data).hexdigest()


def test_a_writer_that_fails_midway_leaves_the_old_file_and_no_temporary(
        tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="writer broke"):
        write(target, b"half of the new cont", force=True, then=fail(RuntimeError("writer broke")))
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    new = tmp_path / "new.onnx"
    with pytest.raises(KeyboardInterrupt):
        write(new, b"partial", then=fail(KeyboardInterrupt()))
    assert not new.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_existing_files_are_kept_without_force_and_replaced_with_it(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    fsutil.write_text_atomic(target, "first ✓\n")
    with pytest.raises(OutputError, match=r"report\.json: already exists \(pass force=True"):
        fsutil.write_text_atomic(target, "second\n")
    assert target.read_text(encoding="utf-8") == "first ✓\n"
    fsutil.write_text_atomic(target, "second\n", force=True)
    assert target.read_text() == "second\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_file_that_appears_during_the_write_is_not_clobbered(tmp_path: Path) -> None:
    """Another process wins the race: its file stays, ours is dropped, the error says so."""
    target = tmp_path / "out.bin"
    with pytest.raises(OutputError, match="already exists"):
        write(target, b"ours", then=lambda: target.write_bytes(b"theirs"))
    assert target.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    """mkstemp creates 0600; a report must be readable like any file the user writes."""
    mask = os.umask(0o022)
    try:
        path = fsutil.write_bytes_atomic(tmp_path / "r.md", b"x")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_unwritable_places_are_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a directory"):
        fsutil.check_writable(tmp_path)
    with pytest.raises(OutputError, match=r"directory .*missing does not exist"):
        fsutil.check_writable(tmp_path / "missing" / "m.onnx")
    with pytest.raises(ValueError, match="mode"), fsutil.atomic_write(tmp_path / "x", mode="a"):
        pass  # pragma: no cover
    assert fsutil.check_writable(tmp_path / "m.onnx") == tmp_path / "m.onnx"
    ro, how = read_only_dir(tmp_path)
    if ro is None:
        pytest.skip(how)
    with pytest.raises(OutputError, match=r"not writable|cannot write"):
        fsutil.check_writable(ro / "m.onnx")
    if ro.is_relative_to(tmp_path):
        ro.chmod(0o755)
    assert list(tmp_path.rglob("*.onnx")) == []


def test_disk_full_while_writing_is_an_output_error_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.json"
    target.write_text("previous\n")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fsutil.os, "fsync", full)
    with pytest.raises(OutputError, match=r"report\.json: cannot write \(No space left"):
        fsutil.write_text_atomic(target, "new\n", force=True)
    assert target.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_rename_failure_is_an_output_error(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(fsutil.os, "replace", refuse)
    with pytest.raises(OutputError, match=r"out\.bin: cannot write"):
        fsutil.write_bytes_atomic(tmp_path / "out.bin", b"x", force=True)
    assert list(tmp_path.iterdir()) == []


def test_check_output_dir_checks_without_creating(tmp_path: Path) -> None:
    """What ``evaluate --out`` can call before the work so a failed run leaves no empty
    directory; the same refusals as ``prepare_output_dir``, and nothing on disk changes."""
    assert fsutil.check_output_dir(tmp_path / "new") == tmp_path / "new"
    assert fsutil.check_output_dir(tmp_path) == tmp_path
    with pytest.raises(OutputError, match=r"parent directory .* does not exist"):
        fsutil.check_output_dir(tmp_path / "a" / "b")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        fsutil.check_output_dir(tmp_path / "file")
    expected = ["file"]
    ro, how = read_only_dir(tmp_path)
    if ro is not None:
        with pytest.raises(OutputError, match="cannot create directory") as info:
            fsutil.check_output_dir(ro / "reports")
        assert str(ro / "reports") in str(info.value), how
        assert not (ro / "reports").exists()
        if ro.is_relative_to(tmp_path):  # the chmod-0555 directory of a non-root run
            ro.chmod(0o755)
            expected.append(ro.name)
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(expected)


def test_prepare_output_dir_creates_one_level_only(tmp_path: Path) -> None:
    assert fsutil.prepare_output_dir(tmp_path / "reports").is_dir()
    assert fsutil.prepare_output_dir(tmp_path / "reports").is_dir()  # again: fine
    with pytest.raises(OutputError, match="does not exist"):
        fsutil.prepare_output_dir(tmp_path / "typo" / "reports")
    assert not (tmp_path / "typo").exists()


# --------------------------------------------------------------------------- inputs
def test_an_output_may_not_replace_an_input_by_any_name(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"the user's model")
    (tmp_path / "link.onnx").symlink_to(model)
    os.link(model, tmp_path / "hard.onnx")
    data = tmp_path / "images"
    (data / "cat").mkdir(parents=True)
    cases = [(model, "would overwrite the input"),
             (tmp_path / "link.onnx", "would overwrite the input"),
             (tmp_path / "hard.onnx", "would overwrite the input"),
             (tmp_path / "sub" / ".." / "model.onnx", "would overwrite the input"),
             (data / "cat" / "new.png", "into the input directory")]
    for output, fragment in cases:
        with pytest.raises(OutputError, match=fragment):
            fsutil.refuse_overwriting_inputs([None, "-", output], [model, data])
    with pytest.raises(OutputError, match="named twice"):
        fsutil.refuse_overwriting_inputs([tmp_path / "a.json", tmp_path / "a.json"], [model])
    fsutil.refuse_overwriting_inputs([tmp_path / "out.onnx", "-", None], [model, data, None])
    assert model.read_bytes() == b"the user's model"


# --------------------------------------------------------------------------- report directories
def test_a_report_directory_is_locked_while_written(tmp_path: Path) -> None:
    directory = tmp_path / "reports"
    directory.mkdir()
    busy = OutputError, "another process is writing reports here"
    with fsutil.exclusive_directory(directory), pytest.raises(busy[0], match=busy[1]), \
            fsutil.exclusive_directory(directory):
        pass  # pragma: no cover
    with fsutil.exclusive_directory(directory):  # released afterwards
        pass
    assert [p.name for p in directory.iterdir()] == [LOCK_NAME]


def write_reports_then_fail(directory: Path, targets: list[Path]) -> None:
    with fsutil.report_directory(directory, targets):
        fsutil.write_text_atomic(targets[1], "{}", force=True)
        raise RuntimeError("failed")


def test_a_failed_report_set_removes_what_it_created_and_only_that(tmp_path: Path) -> None:
    existing = tmp_path / "old"
    existing.mkdir()
    (existing / "keep.md").write_text("someone's file")
    (existing / "report.md").write_text("previous report")
    for directory in (existing, tmp_path / "new"):
        targets = [directory / "report.md", directory / "report.json"]
        with pytest.raises(RuntimeError, match="failed"):
            write_reports_then_fail(directory, targets)
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in existing.iterdir()) == sorted([LOCK_NAME, "keep.md",
                                                                  "report.md"])
    assert (existing / "report.md").read_text() == "previous report"
    done = tmp_path / "done"
    with fsutil.report_directory(done, [done / "report.json"]):
        fsutil.write_text_atomic(done / "report.json", "{}")
    assert (done / "report.json").read_text() == "{}"
    with pytest.raises(OutputError, match="exists and is not a directory"), \
            fsutil.report_directory(done / "report.json", []):
        pass  # pragma: no cover
