"""Interrupts and concurrency: no half-written file, the previous output intact, no interleaving.

The writes are exercised in real subprocesses that get real signals: a slow writer stopped
mid-file, a tight loop of small atomic writes stopped at a random instant (which lands in every
window between creating, renaming and cleaning up a temporary file), and the real ``evaluate
--out`` command stopped at a random point of its run. Concurrency uses two real processes: one
holding the report-directory lock while ``evaluate`` tries to write, and two ``evaluate`` runs
racing for one directory.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from model_factory import make_classifier
from resnet8_onnx.support import errors

REPORTS = ("report.json", "report.md", "per_class.csv", "confusion_onnxruntime.png")
META_TXT = "".join(f"{n}\n" for n in ("airplane", "automobile", "bird", "cat", "deer", "dog",
                                      "frog", "horse", "ship", "truck")).encode()


def child_env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "RESNET8_ONNX_OFFLINE": "1", "RESNET8_ONNX_DATA_DIR": "",
            "RESNET8_ONNX_CACHE_DIR": str(tmp / "cache")}


def cli_popen(args: list[str], tmp: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "resnet8_onnx", "-q", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(tmp), cwd=tmp)


# ``python -m resnet8_onnx`` is exactly ``sys.exit(cli.main())``; this does the same after
# saying "ready", so a signal can be timed from the moment the command's own code runs
# (before that, a Ctrl-C is the interpreter's start-up being interrupted, not the command).
READY_MAIN = """
import sys
from resnet8_onnx import cli
print("ready", flush=True)
sys.exit(cli.main(sys.argv[1:]))
"""


def cli_when_ready(args: list[str], tmp: Path) -> tuple[subprocess.Popen[str], float]:
    """Start the real CLI; return it and the moment its ``main`` was about to run."""
    proc = subprocess.Popen([sys.executable, "-c", READY_MAIN, "-q", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(tmp), cwd=tmp)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "ready\n", (line, proc.communicate())
    return proc, time.perf_counter()


def leftovers(directory: Path) -> list[str]:
    """Temporary files an interrupted write could have left behind."""
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".part"))


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# --------------------------------------------------------------------------- atomic_write
SLOW_WRITER = """
import sys, time
from resnet8_onnx.support import errors, fsutil

target, force = sys.argv[1], sys.argv[2] == "force"
with errors.handle_interrupts():
    try:
        with fsutil.atomic_write(target, force=force) as f:
            f.write(b"n" * (1 << 20))
            f.flush()
            print("writing", flush=True)
            for _ in range(3000):
                f.write(b"n" * (1 << 16))
                time.sleep(0.001)
    except KeyboardInterrupt:
        sys.exit(130)
print("finished", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("previous", [b"previous complete output\n", None],
                         ids=["over-existing", "new-file"])
def test_write_killed_midway_leaves_previous_output_and_no_temp_file(
        tmp_path: Path, sig: signal.Signals, previous: bytes | None) -> None:
    target = tmp_path / "model.onnx"
    if previous is not None:
        target.write_bytes(previous)
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(target), "force" if previous else "new"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(tmp_path))
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "writing"
    parts = leftovers(tmp_path)
    assert len(parts) == 1, parts  # the write is really under way, into a temporary file
    assert (tmp_path / parts[0]).stat().st_size >= 1 << 20
    child.send_signal(sig)
    _, stderr = child.communicate(timeout=30)
    assert child.returncode == errors.INTERRUPTED, stderr
    assert leftovers(tmp_path) == []
    if previous is None:
        assert not target.exists()
    else:
        assert target.read_bytes() == previous


STORM = """
import sys
from pathlib import Path
from resnet8_onnx.support import errors, fsutil

root = Path(sys.argv[1])
payload = bytes(range(256)) * 64
print("started", flush=True)
with errors.handle_interrupts():
    try:
        i = 0
        while True:
            fsutil.write_bytes_atomic(root / f"{i % 50}.bin", payload, force=True)
            with fsutil.exclusive_directory(root):
                fsutil.write_text_atomic(root / f"{i % 50}.txt", str(i) * 100, force=True)
            i += 1
    except KeyboardInterrupt:
        sys.exit(130)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_at_a_random_instant_of_many_writes_leaves_only_complete_files(
        tmp_path: Path, sig: signal.Signals) -> None:
    """Thousands of writes per second, stopped at a random instant: whatever window the
    signal lands in (probe, temporary file creation, rename, cleanup), every file present is
    complete and no temporary file is left."""
    seed = random.randrange(1 << 30)
    delays = random.Random(seed).sample(range(150, 600), 3)
    for delay_ms in delays:
        root = tmp_path / f"storm-{delay_ms}"
        root.mkdir()
        child = subprocess.Popen([sys.executable, "-c", STORM, str(root)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=child_env(tmp_path))
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "started"
        time.sleep(delay_ms / 1000)
        child.send_signal(sig)
        _, stderr = child.communicate(timeout=30)
        context = f"seed {seed}, delay {delay_ms} ms"
        assert child.returncode == errors.INTERRUPTED, (context, stderr)
        assert leftovers(root) == [], context
        payload = bytes(range(256)) * 64
        bins = list(root.glob("*.bin"))
        assert bins, context  # it did write before the signal
        for path in bins:
            assert path.read_bytes() == payload, (context, path.name)
        for path in root.glob("*.txt"):
            text = path.read_text()
            assert len(text) % 100 == 0, (context, path.name)
            assert text == text[: len(text) // 100] * 100, (context, path.name)


# --------------------------------------------------------------------------- the real CLI
@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """10,000 generated images (binary layout) and two different small ONNX classifiers."""
    root = tmp_path_factory.mktemp("interrupts")
    data = root / "cifar-10-batches-bin"
    data.mkdir()
    rng = np.random.default_rng(7)
    records = rng.integers(0, 256, (10_000, 3073), dtype=np.uint8)
    records[:, 0] = np.arange(10_000) % 10
    (data / "test_batch.bin").write_bytes(records.tobytes())
    (data / "batches.meta.txt").write_bytes(META_TXT)
    return data, make_classifier(root / "a.onnx", seed=1), make_classifier(root / "b.onnx",
                                                                           seed=2)


def check_reports(out: Path, *, complete: bool) -> dict[str, str]:
    """Each report file is absent or complete and parseable; returns which model wrote what."""
    from PIL import Image

    written: dict[str, str] = {}
    if (out / "report.json").exists():
        record = json.loads((out / "report.json").read_text())
        assert record["metrics"]["total"] == 10_000
        written["json"] = Path(record["model"]["path"]).name
    if (out / "report.md").exists():
        text = (out / "report.md").read_text()
        assert text.endswith("\n")
        assert "## Provenance" in text
        written["md"] = text.splitlines()[0].removeprefix("# CIFAR-10 evaluation: ")
    if (out / "per_class.csv").exists():
        rows = list(csv.DictReader(io.StringIO((out / "per_class.csv").read_text())))
        assert len(rows) == 10
        assert sum(int(r["support"]) for r in rows) == 10_000
        written["csv"] = ",".join(r["correct"] for r in rows)
    if (out / "confusion_onnxruntime.png").exists():
        with Image.open(out / "confusion_onnxruntime.png") as im:
            im.load()  # a truncated PNG raises here
            assert im.size[0] > 100
        written["png"] = "ok"
    if complete:
        assert set(written) == {"json", "md", "csv", "png"}, written
    return written


def reference_run(data: Path, model: Path, tmp: Path) -> float:
    """Seconds an uninterrupted ``evaluate --out`` takes from the start of ``main``."""
    out = tmp / "reference"
    proc, ready = cli_when_ready(["evaluate", str(model), "--data-dir", str(data),
                                  "--out", str(out)], tmp)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    check_reports(out, complete=True)
    return time.perf_counter() - ready




@pytest.mark.slow
def test_evaluate_interrupted_at_random_points(tmp_path: Path, workload) -> None:
    """SIGINT anywhere in ``evaluate --out``: exit 130 with one line (or 0 if it had already
    finished), each report absent or complete, no temporary file."""
    data, model, _ = workload
    total = reference_run(data, model, tmp_path)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    interrupted = 0
    for i in range(4):  # one random instant in each quarter of the run
        delay = total * (i + rng.random()) / 4
        out = tmp_path / f"out-{i}"
        proc, _ = cli_when_ready(["evaluate", str(model), "--data-dir", str(data),
                                  "--out", str(out)], tmp_path)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        context = f"seed {seed}, run {i}, signal {delay:.3f} s into a {total:.2f} s run"
        if out.exists():
            assert leftovers(out) == [], context
        if proc.returncode == errors.INTERRUPTED:
            interrupted += 1
            # the report set is taken back whole: nothing it wrote stays
            assert one_line(stderr) == "resnet8-onnx: interrupted; nothing was written", context
            if out.exists():
                check_reports(out, complete=False)
        else:  # the work was done: the signal came after main() or during interpreter exit
            assert proc.returncode in (0, -signal.SIGINT), (context, proc.returncode, stderr)
            assert "Traceback" not in stderr, context
            check_reports(out, complete=True)
    assert interrupted >= 2, f"seed {seed}: the signals came too late to test anything"


@pytest.mark.slow
def test_evaluate_terminated_cleans_up_like_ctrl_c(tmp_path: Path, workload) -> None:
    data, model, _ = workload
    out = tmp_path / "out"
    proc, _ = cli_when_ready(["evaluate", str(model), "--data-dir", str(data), "--out",
                              str(out)], tmp_path)
    time.sleep(0.3)  # into the data loading and inference
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == errors.INTERRUPTED, stderr
    assert one_line(stderr) == "resnet8-onnx: interrupted; nothing was written"
    if out.exists():
        assert leftovers(out) == []
        check_reports(out, complete=False)


# --------------------------------------------------------------------------- concurrency
HOLD_LOCK = """
import sys
from resnet8_onnx.support.fsutil import exclusive_directory

with exclusive_directory(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_report_directory_locked_by_another_process_is_refused(tmp_path: Path,
                                                               workload) -> None:
    data, model, _ = workload
    out = tmp_path / "reports"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=child_env(tmp_path))
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        refused = cli_popen(["evaluate", str(model), "--data-dir", str(data), "--limit", "200",
                             "--out", str(out)], tmp_path)
        _, stderr = refused.communicate(timeout=120)
        assert refused.returncode == errors.OUTPUT_ERROR, stderr
        assert "another process is writing reports here" in one_line(stderr)
        assert str(out) in one_line(stderr)
        assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []
    finally:
        holder.communicate("\n", timeout=30)
    after = cli_popen(["evaluate", str(model), "--data-dir", str(data), "--limit", "200",
                       "--out", str(out)], tmp_path)
    _, stderr = after.communicate(timeout=120)
    assert after.returncode == 0, stderr  # the lock died with its holder


@pytest.mark.slow
@pytest.mark.parametrize("force", [False, True], ids=["no-force", "force"])
def test_two_evaluates_racing_for_one_directory(tmp_path: Path, workload, force: bool) -> None:
    """Both start together. Without --force exactly one writes and the other is refused with
    one line; with --force each either writes or is refused. Either way the four files that
    remain all come from one run: never json from one model and markdown from the other."""
    data, model_a, model_b = workload
    out = tmp_path / "shared"
    extra = ["--force"] if force else []
    procs = {m.name: cli_popen(["evaluate", str(m), "--data-dir", str(data), "--out", str(out),
                                *extra], tmp_path) for m in (model_a, model_b)}
    results = {name: (p.communicate(timeout=120), p.returncode) for name, p in procs.items()}
    codes = sorted(code for _, code in results.values())
    for (_, stderr), code in results.values():
        if code == errors.OUTPUT_ERROR:
            line = one_line(stderr)
            assert ("another process is writing reports here" in line
                    or "already exists" in line), line
        else:
            assert code == 0, stderr
    if force:
        assert codes[0] == 0, results
    else:
        assert codes == [0, errors.OUTPUT_ERROR], results
    written = check_reports(out, complete=True)
    assert written["json"] == written["md"], written
    assert written["json"] in procs
    record = json.loads((out / "report.json").read_text())
    from_json = ",".join(str(c["correct"]) for c in record["metrics"]["per_class"])
    assert written["csv"] == from_json
    assert leftovers(out) == []


# --------------------------------------------------------------------------- run
@pytest.mark.slow
def test_run_terminated_after_writing_the_model_can_simply_be_rerun(tmp_path: Path) -> None:
    """SIGTERM once ``run`` has written model.onnx: exit 130 and the report directory it
    created is gone, so the very same command (no --force) then succeeds."""
    from conftest import SHARED, shared_path

    model = shared_path("models", "pretrainedResnet.h5")
    shared_path("cifar-10", "cifar-10-batches-bin", "test_batch.bin")
    out = tmp_path / "report"
    argv = ["run", "--model", str(model), "--data-dir", str(SHARED), "--limit", "300",
            "--out", str(out)]
    proc, _ = cli_when_ready(argv, tmp_path)
    deadline = time.monotonic() + 300
    while not (out / "model.onnx").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "run never wrote model.onnx"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == errors.INTERRUPTED, stderr
    assert "Traceback" not in stderr
    # after TF's log; model.onnx was complete, but went with the report directory
    assert stderr.strip().splitlines()[-1] == "resnet8-onnx: interrupted; nothing was written"
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    again = cli_popen(argv, tmp_path)
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert {"model.onnx", "report.json", "report.md"} <= {p.name for p in out.iterdir()}


# --------------------------------------------------------------------------- swallowed signals
SWALLOWED = """
import gc, os, signal, sys
from pathlib import Path
from resnet8_onnx.support import errors, fsutil

class Finaliser:  # like TensorFlow's functions, freed while the work goes on
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs here, inside __del__, and its raise is lost
            pass

out = Path(sys.argv[1])
with errors.handle_interrupts() as state:
    try:
        with fsutil.report_directory(out, [out / "report.json"]):
            (out / "report.json").write_text("{}")
            Finaliser()
            gc.collect()
            print("work finished", state.signum, flush=True)
    except KeyboardInterrupt as exc:
        print("interrupted", exc, flush=True)
"""


def test_a_signal_swallowed_by_a_finaliser_still_interrupts_and_cleans_up(tmp_path) -> None:
    """SIGTERM landing in a ``__del__`` is lost by Python; the report directory still sees it
    before committing: its files go, the command counts as interrupted, no 'Exception
    ignored' traceback reaches the user."""
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-c", SWALLOWED, str(out)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.stdout.splitlines() == [f"work finished {int(signal.SIGTERM)}",
                                        "interrupted SIGTERM"], proc.stderr
    assert "Exception ignored" not in proc.stderr
    assert proc.stderr == ""
    assert not out.exists()


# --------------------------------------------------------------------------- the last moments
# The real CLI with a signal sent from inside the code at a chosen point, so the timing is
# forced rather than raced. ``main()`` reads sys.argv, as the installed command does.
AT_A_POINT = """
import gc, os, signal, sys
from resnet8_onnx import cli
from resnet8_onnx.support import fsutil
from resnet8_onnx.cli import commands

where = sys.argv.pop(1)

def interrupt():
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(1000):  # the handler runs here
        pass

class Finaliser:  # like TensorFlow's ApiDefMap, freed at interpreter exit
    def __del__(self):
        interrupt()

publish = fsutil._publish
if where == "after-publish":  # the file is complete and in place, then Ctrl-C
    def _publish(tmp, target, *, force):
        publish(tmp, target, force=force)
        interrupt()
    fsutil._publish = _publish
elif where == "before-publish":  # Ctrl-C as the temporary file is synced to disk
    fsync = os.fsync
    def synced(fd):
        interrupt()
        fsync(fd)
    os.fsync = synced
elif where == "while-reporting":  # Ctrl-C, then a second one while the line is printed
    def _publish(tmp, target, *, force):
        interrupt()
    fsutil._publish = _publish
    message = cli.interrupted_message
    def twice():
        interrupt()
        return message()
    cli.interrupted_message = twice
keep = Finaliser() if where in ("at-exit", "while-reporting") else None
sys.argv[0] = "resnet8-onnx"
sys.exit(cli.main())
"""


@pytest.fixture
def small_data(tmp_path: Path) -> Path:
    data = tmp_path / "data" / "cifar-10-batches-bin"
    data.mkdir(parents=True)
    rng = np.random.default_rng(1)
    records = rng.integers(0, 256, (20, 3073), dtype=np.uint8)
    records[:, 0] = np.arange(20) % 10
    (data / "test_batch.bin").write_bytes(records.tobytes())
    (data / "batches.meta.txt").write_bytes(META_TXT)
    return data


def cli_at(where: str, args: list[str], tmp: Path) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-c", AT_A_POINT, where, "-q", *args],
                          capture_output=True, text=True, env=child_env(tmp), cwd=tmp,
                          timeout=120, check=False)
    return proc.returncode, proc.stderr


def test_a_signal_just_after_the_output_is_complete_says_it_was_kept(tmp_path,
                                                                      small_data) -> None:
    """The file was written and the command exited 130 with no word about it; now one line
    that names the file kept, complete."""
    out = tmp_path / "d.json"
    code, stderr = cli_at("after-publish", ["data", "--data-dir", str(small_data), "--json",
                                            str(out)], tmp_path)
    assert code == errors.INTERRUPTED, stderr
    assert one_line(stderr) == f"resnet8-onnx: interrupted; completed and kept: {out}"
    assert json.loads(out.read_text())["count"] == 20


def test_a_signal_before_the_output_is_complete_says_nothing_was_written(tmp_path,
                                                                         small_data) -> None:
    out = tmp_path / "d.json"
    code, stderr = cli_at("before-publish", ["data", "--data-dir", str(small_data),
                                             "--json", str(out)], tmp_path)
    assert code == errors.INTERRUPTED, stderr
    assert one_line(stderr) == "resnet8-onnx: interrupted; nothing was written"
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_a_report_set_taken_back_is_not_called_kept(tmp_path, small_data) -> None:
    """evaluate --out interrupted after its first report file: the set is removed, and the
    line says nothing was written (not the file that was briefly there)."""
    model = make_classifier(tmp_path / "m.onnx")
    out = tmp_path / "ev"
    code, stderr = cli_at("after-publish", ["evaluate", str(model), "--data-dir",
                                            str(small_data), "--out", str(out)], tmp_path)
    assert code == errors.INTERRUPTED, stderr
    assert one_line(stderr) == "resnet8-onnx: interrupted; nothing was written"
    assert not out.exists()


@pytest.mark.parametrize("where", ["while-reporting", "at-exit"])
def test_a_second_signal_while_ending_prints_no_traceback(tmp_path, small_data,
                                                         where) -> None:
    """A second Ctrl-C while the line is printed, or one landing in a finaliser at exit
    (TensorFlow's ApiDefMap.__del__), added 'Exception ignored … Traceback' after the line."""
    out = tmp_path / "d.json"
    code, stderr = cli_at(where, ["data", "--data-dir", str(small_data), "--json", str(out)],
                          tmp_path)
    assert "Exception ignored" not in stderr
    if where == "at-exit":  # the work was done: exit 0, nothing said
        assert code == errors.OK, stderr
        assert stderr == ""
        assert out.is_file()
    else:
        assert code == errors.INTERRUPTED, stderr
        assert one_line(stderr) == "resnet8-onnx: interrupted; nothing was written"
