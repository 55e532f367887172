"""The run directory's lock between real processes: a second writer is refused, a killed writer's lock is free again,
only the holder deletes anything, another host's temporaries are never deleted, and contenders never both hold it."""
import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from cascade_distill.cli import main
from cascade_distill.store import RunDir, RunDirLocked, lock_holder
from conftest import lock_held_elsewhere



@pytest.fixture
def holder(tmp_path):
    "A separate process holding the lock of `tmp_path / 'run'` until it is killed."
    run = tmp_path / "run"
    with lock_held_elsewhere(run) as process:
        yield run, process


def test_second_writer_is_refused_with_the_holder_named(holder):
    run, process = holder
    assert lock_holder(run)["pid"] == process.pid
    with pytest.raises(RunDirLocked, match=f"process {process.pid} on {socket.gethostname()}"):
        with RunDir(run).locked():
            pass
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):  # the CLI on the same run directory stops before writing anything
        status = main(["demo", "--run-dir", str(run)])
    assert status == 2
    assert f"process {process.pid} on {socket.gethostname()}" in stderr.getvalue()
    assert not (run / "config.json").exists()


def test_lock_of_a_killed_process_is_taken_over(holder):
    run, process = holder
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert lock_holder(run) is None  # the kernel released the killed process's lock; its name there is out of date
    with RunDir(run).locked():
        assert lock_holder(run)["pid"] == os.getpid()
    assert lock_holder(run) is None


def test_an_empty_lock_left_by_a_crash_is_taken_over(tmp_path):
    "A process killed between creating the lock and writing its name leaves an empty file: taken over after a wait."
    run = RunDir(tmp_path / "run")
    (run / ".lock").write_text("")
    with run.locked():
        assert lock_holder(run.path)["pid"] == os.getpid()


def _dead_pid() -> int:
    "The PID of a process that has ended."
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def test_a_second_process_deletes_nothing_while_another_writes(holder):
    """A writer elsewhere (simulated: its temporaries and its name say another host, whose PIDs mean nothing here)
    holds the lock; a second process opening the run directory, or trying to write, deletes none of its files."""
    run, process = holder
    dead = _dead_pid()
    foreign = run / f".teacher1_logits.tmp-otherhost-{dead}"  # another host's live write: its PID is not ours to check
    foreign.mkdir()
    (foreign / "logits.npy").write_bytes(b"being written")
    local_dead = run / f".scores.parquet.tmp-{socket.gethostname()}-{dead}"  # the holder's to clean, not ours
    local_dead.write_text("left by a killed process")
    (run / ".lock.holder").write_text(f'{{"pid": {dead}, "host": "otherhost", "since": "2026-01-01T00:00:00"}}')
    RunDir(run)  # read-only: opening deletes nothing
    with pytest.raises(RunDirLocked, match=f"process {dead} on otherhost"):
        with RunDir(run).locked():
            pass
    assert (foreign / "logits.npy").read_bytes() == b"being written" and local_dead.exists()


def test_only_temporaries_of_known_dead_processes_are_removed(tmp_path):
    "The lock holder removes its own host's temporaries whose process is gone, never another host's."
    run = RunDir(tmp_path / "run")
    dead = _dead_pid()
    foreign = run / f".student.tmp-otherhost-{dead}"
    foreign.mkdir()
    local_dead = run / f".split.parquet.tmp-{socket.gethostname()}-{dead}"
    local_dead.write_text("left by a killed process")
    with run.locked():
        assert foreign.is_dir() and not local_dead.exists()


CONTENDER = """
import os, sys, time
from cascade_distill.store import RunDir, RunDirLocked
run, held, overlaps = sys.argv[1], 0, 0
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
for _ in range(int(sys.argv[3])):
    try:
        with RunDir(run).locked():
            try:  # a second holder at the same time would find this file there
                os.close(os.open(os.path.join(run, "inside"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                overlaps += 1
                continue
            held += 1
            time.sleep(0.002)
            os.unlink(os.path.join(run, "inside"))
    except RunDirLocked:
        time.sleep(0.001)
print(held, overlaps)
"""


def test_contending_processes_never_hold_the_lock_together(tmp_path):
    """Four processes take and release the lock as fast as they can, over a lock file a killed process left: never
    two holders at once, every one of them gets it, and the lock is free at the end (none lost)."""
    run = RunDir(tmp_path / "run")
    (run / ".lock").write_text(f'{{"pid": {_dead_pid()}, "host": "{socket.gethostname()}", "since": "then"}}')
    start = time.time() + 2
    contenders = [subprocess.Popen([sys.executable, "-c", CONTENDER, str(run.path), str(start), "60"],
                                   stdout=subprocess.PIPE, text=True) for _ in range(4)]
    results = [tuple(map(int, p.communicate(timeout=300)[0].split())) for p in contenders]
    assert all(overlaps == 0 for _, overlaps in results), results
    assert all(held > 0 for held, _ in results), results
    assert lock_holder(run.path) is None
    with run.locked():
        assert lock_holder(run.path)["pid"] == os.getpid()
