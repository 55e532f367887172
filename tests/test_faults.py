"""Faults: a cascade killed in any stage resumes to the same run directory, and a full disk breaks nothing finished."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from transformers import AutoModelForTokenClassification

from cascade_distill.pipeline import STAGES, Cascade
from cascade_distill.store import LogitStore, file_sha256
from cascade_distill.student import Student
from cascade_distill.teacher2 import DenseHeadTagger
from test_pipeline import TESTS, tiny_config

# The cascade of test_pipeline's KILL_SCRIPT (same data, config and seed), optionally with a fault injected, after
# which it touches `<run>/../stalled` and hangs until the test kills it, so the kill lands at a known point:
# "write:NAME"       dies while writing the file NAME: at the rename that would publish it (the last moment of an
#                    atomic write), the temporary file is cut to half its bytes, as a death mid-write leaves it;
# "trainer_state:N"  dies inside the N-th Trainer checkpoint, before its trainer_state.json is written.
FAULT_SCRIPT = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from transformers.trainer_callback import TrainerState
from test_pipeline import tiny_config
from cascade_distill.data import demo_corpus
from cascade_distill.pipeline import Cascade

run_dir, checkpoint, fault = sys.argv[1], sys.argv[2], sys.argv[4] if len(sys.argv) > 4 else ""

def hang():
    (Path(run_dir).parent / "stalled").touch()
    time.sleep(600)

if fault.startswith("write:"):
    name = fault.split(":", 1)[1]
    def die_while_writing(rename):
        def renamed(src, dst, *args, **kwargs):
            if os.path.basename(os.fspath(dst)) == name and os.path.isfile(src):
                os.truncate(src, os.path.getsize(src) // 2)
                hang()
            return rename(src, dst, *args, **kwargs)
        return renamed
    os.replace, os.rename = die_while_writing(os.replace), die_while_writing(os.rename)
elif fault.startswith("trainer_state:"):
    save_to_json, saves = TrainerState.save_to_json, []
    def hang_on_nth_save(state, json_path):
        saves.append(json_path)
        if len(saves) == int(fault.split(":")[1]):
            hang()
        return save_to_json(state, json_path)
    TrainerState.save_to_json = hang_on_nth_save

Cascade(run_dir, tiny_config(checkpoint), **demo_corpus(seed=0, limit=240)).run()
"""

OUTPUT_TABLES = ("scores", "split", "relabel", "samples")
OUTPUT_FOLDERS = {"teacher1/model": lambda folder: AutoModelForTokenClassification.from_pretrained(str(folder)),
                  "teacher2/model": DenseHeadTagger.from_pretrained, "student/model": Student.from_pretrained,
                  "teacher1_logits": LogitStore, "teacher2_logits": LogitStore}


def _manifest(run: Path) -> dict:
    path = run / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _assert_manifest_intact(run: Path):
    "Every file the manifest records exists with its recorded sha256."
    for stage, entry in _manifest(run).items():
        for rel, digest in entry["files"].items():
            assert (run / rel).is_file() and file_sha256(run / rel) == digest, f"{stage}: {rel} changed or is gone"


def _assert_outputs_whole(run: Path):
    "Every stage output on disk, recorded or not, is complete: each table, model and logit store loads."
    for name in OUTPUT_TABLES:
        if (run / f"{name}.parquet").exists():
            pd.read_parquet(run / f"{name}.parquet")
    for rel, load in OUTPUT_FOLDERS.items():
        if (run / rel).exists():
            load(run / rel)


def _temp_files(run: Path) -> list[str]:
    "Leftovers of atomic writes: `.NAME.tmp-PID` files and folders, `.NAME.old-PID` folders."
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if ".tmp-" in p.name or ".old-" in p.name)


def _copy_finished_stages(clean: Path, run: Path, before: str):
    "Make `run` a run directory holding the clean run's stages that come before `before`, as if it had stopped there."
    kept = {stage: entry for stage, entry in _manifest(clean).items() if STAGES.index(stage) < STAGES.index(before)}
    for rel in (rel for entry in kept.values() for rel in entry["files"]):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(clean / rel, run / rel)
    (run / "manifest.json").write_text(json.dumps(kept, indent=1))


def _start(run: Path, checkpoint: str, fault: str = "") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", FAULT_SCRIPT, str(run), checkpoint, TESTS, fault])


def _kill_when(proc: subprocess.Popen, ready):
    "SIGKILL `proc` as soon as `ready()` is true (and in any case: never leave it running)."
    deadline = time.time() + 300
    try:
        while not ready() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        assert ready(), "the run was never seen at the moment to kill it"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, tiny_checkpoint, tweets) -> Path:
    "An uninterrupted run with the data, config and seed of FAULT_SCRIPT (`tweets` is demo_corpus(seed=0, limit=240))."
    run = tmp_path_factory.mktemp("clean") / "run"
    Cascade(run, tiny_config(tiny_checkpoint), **tweets).run()
    return run


def _checkpoints(folder: Path, complete: bool) -> list[Path]:
    return [c for c in folder.glob("checkpoint-*") if (c / "trainer_state.json").is_file() == complete]


KILLS = [  # (stage killed, injected fault, moment to kill when there is no fault, check of the killed state)
    pytest.param("score", "write:scores.parquet", None, lambda run: not (run / "scores.parquet").exists(),
                 id="score-writing-scores"),
    pytest.param("teacher2", "", lambda run: _checkpoints(run / "teacher2/work/checkpoints", complete=True),
                 lambda run: not (run / "teacher2/model").exists() and not (run / "relabel.parquet").exists(),
                 id="teacher2-after-checkpoint"),
    pytest.param("teacher2", "trainer_state:2", None,
                 lambda run: _checkpoints(run / "teacher2/work/checkpoints", complete=False),
                 id="teacher2-writing-checkpoint"),
    pytest.param("student", "", lambda run: (run / "student/work/gold/final/history.json").is_file()
                 and _checkpoints(run / "student/work/distill", complete=True),
                 lambda run: not (run / "student/model").exists(), id="student-distilling"),
    pytest.param("student", "write:samples.parquet", None,
                 lambda run: (run / "student/model").is_dir() and not (run / "samples.parquet").exists(),
                 id="student-writing-samples"),
]


@pytest.mark.parametrize("stage,fault,moment,killed_state", KILLS)
def test_killed_stage_resumes_to_the_uninterrupted_run(tmp_path, tiny_checkpoint, clean_run, stage, fault, moment,
                                                       killed_state):
    "Killed in `stage`, the run records nothing half done, and resuming ends byte for byte where the clean run did."
    run = tmp_path / "killed"
    _copy_finished_stages(clean_run, run, before=stage)
    stalled = tmp_path / "stalled"
    _kill_when(_start(run, tiny_checkpoint, fault), stalled.exists if fault else lambda: moment(run))

    manifest = _manifest(run)
    assert set(manifest) == set(STAGES[:STAGES.index(stage)]), f"{stage} was recorded: killed too late"
    assert killed_state(run), "not killed in the state this case is about"
    _assert_manifest_intact(run)
    _assert_outputs_whole(run)
    if fault.startswith("write:"):
        assert _temp_files(run), "the half-written file should be under a temporary name"

    resumed = subprocess.run([sys.executable, "-c", FAULT_SCRIPT, str(run), tiny_checkpoint, TESTS],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, f"the resumed run failed:\n{resumed.stderr[-3000:]}"

    assert set(_manifest(run)) == set(STAGES)
    _assert_manifest_intact(run)
    for name in ("split.parquet", "samples.parquet"):
        assert pd.read_parquet(run / name).equals(pd.read_parquet(clean_run / name)), name
    report, clean_report = (json.loads((r / "report.json").read_text()) for r in (run, clean_run))
    for key in [("teacher1", "dev_f1"), ("teacher1", "test_f1"), ("teacher2", "t2_f1_unqualified"),
                ("student", "test_f1")]:
        assert report[key[0]][key[1]] == clean_report[key[0]][key[1]], key
    for name, entry in _manifest(clean_run).items():  # the same bytes: tables and model weights
        assert _manifest(run)[name]["files"] == entry["files"], f"{name}: outputs differ from the uninterrupted run"
    assert not _temp_files(run), "temporary files were left behind"


@pytest.fixture
def finished_copy(tmp_path, clean_run) -> Path:
    "A private copy of the uninterrupted run, free to damage."
    shutil.copytree(clean_run, tmp_path / "run")
    return tmp_path / "run"


def _all_stages_finished(cascade: Cascade) -> bool:
    return all(cascade.run_dir.finished(stage, fp) for stage, fp in cascade.fingerprints().items())


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("failing", ["write_table", "close"])
@pytest.mark.parametrize("table", ["split", "samples"])
def test_disk_full_while_writing_a_table_leaves_the_run_intact(finished_copy, monkeypatch, table, failing):
    "A parquet write that runs out of space after some bytes changes no finished file and leaves no temporary file."
    cascade = Cascade(finished_copy)
    config, manifest = cascade.config, cascade.run_dir.manifest
    before = pd.read_parquet(finished_copy / f"{table}.parquet")

    real = getattr(pq.ParquetWriter, failing)
    def disk_full_after(writer, *args, **kwargs):  # the bytes go to the file, then the disk is full
        real(writer, *args, **kwargs)
        _disk_full()

    monkeypatch.setattr(pq.ParquetWriter, failing, disk_full_after)
    with pytest.raises(OSError) as failure:
        if table == "split":
            cascade.apply_threshold(0.5)  # a new split must be written
        else:
            cascade.write_samples_table()
    assert failure.value.errno == errno.ENOSPC
    monkeypatch.undo()
    leftovers = _temp_files(finished_copy)  # before reopening the run, which writes config.json again

    assert _manifest(finished_copy) == manifest
    _assert_manifest_intact(finished_copy)
    assert pd.read_parquet(finished_copy / f"{table}.parquet").equals(before)
    assert _all_stages_finished(Cascade(finished_copy, config))
    assert not leftovers, "temporary files were left behind"


@pytest.mark.parametrize("name", ["overrides.json", "config.json"])
def test_disk_full_while_writing_json_leaves_the_run_intact(finished_copy, monkeypatch, name):
    "A JSON write whose fsync runs out of space keeps the previous file, the manifest and no temporary file."
    cascade = Cascade(finished_copy)
    first = cascade.train[0].id
    cascade.set_overrides({first: None})  # an (empty) overrides.json that changes no fingerprint
    before = (finished_copy / name).read_bytes()
    manifest = cascade.run_dir.manifest

    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(OSError) as failure:
        if name == "overrides.json":
            cascade.set_overrides({first: "drop"})
        else:
            cascade.apply_threshold(0.5)
    assert failure.value.errno == errno.ENOSPC
    monkeypatch.undo()
    leftovers = _temp_files(finished_copy)  # before reopening the run, which writes config.json again

    assert (finished_copy / name).read_bytes() == before
    assert _manifest(finished_copy) == manifest
    _assert_manifest_intact(finished_copy)
    assert _all_stages_finished(Cascade(finished_copy))  # reopened from the stored config and overrides
    assert not leftovers, "temporary files were left behind"
