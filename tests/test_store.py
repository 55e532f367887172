"""The run directory's lock between real processes: a second writer is refused, a killed writer's lock is taken over."""
import contextlib
import io
import os
import signal
import socket
import subprocess
import sys

import pytest

from cascade_distill.cli import main
from cascade_distill.store import RunDir, RunDirLocked, lock_holder

HOLDER = """
import sys, time
from cascade_distill.store import RunDir
with RunDir(sys.argv[1]).locked():
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    "A separate process holding the lock of `tmp_path / 'run'` until it is killed."
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        yield run, process
    finally:
        process.kill()
        process.wait()


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
    assert lock_holder(run)["pid"] == process.pid  # the killed process could not release it
    with RunDir(run).locked():
        assert lock_holder(run)["pid"] == os.getpid()
    assert lock_holder(run) is None


def test_a_lock_from_another_host_is_refused(tmp_path):
    run = RunDir(tmp_path / "run")
    (run / ".lock").write_text('{"pid": 1, "host": "elsewhere", "since": "2026-01-01T00:00:00"}')
    with pytest.raises(RunDirLocked, match="process 1 on elsewhere .* remove"):
        with run.locked():
            pass


def test_an_empty_lock_left_by_a_crash_is_taken_over(tmp_path):
    "A process killed between creating the lock and writing its name leaves an empty file: taken over after a wait."
    run = RunDir(tmp_path / "run")
    (run / ".lock").write_text("")
    with run.locked():
        assert lock_holder(run.path)["pid"] == os.getpid()
