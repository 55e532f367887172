"""The cascade under two CPU processes (DDP over gloo): torchrun and accelerate launch, same contract, same split."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cascade_distill.benchmark import fork_run
from cascade_distill.pipeline import STAGES, Cascade
from cascade_distill.store import LogitStore
from test_pipeline import KILL_SCRIPT, TESTS, tiny_config

ENV = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def launch(launcher: list[str], run_dir: Path, checkpoint: str, tmp_path: Path):
    "Run the tiny cascade of test_pipeline.py on `run_dir` with `launcher` (two processes)."
    script = tmp_path / "cascade_run.py"
    script.write_text(KILL_SCRIPT)
    done = subprocess.run([*launcher, str(script), str(run_dir), checkpoint, TESTS], capture_output=True, text=True,
                          env=ENV, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_checkpoint, tweets):
    "The same tiny cascade in one process."
    cascade = Cascade(tmp_path_factory.mktemp("single") / "run", tiny_config(tiny_checkpoint), **tweets)
    cascade.run()
    return cascade


def test_torchrun_two_processes_give_the_single_process_split(tmp_path, tiny_checkpoint, single):
    "Teacher 1 from the single-process run; scoring sharded over 2 processes and gathered in order; DDP for the rest."
    multi = tmp_path / "multi"
    fork_run(single.run_dir.path, multi, stages=("teacher1",))
    done = launch([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"], multi, tiny_checkpoint,
                  tmp_path)
    manifest = json.loads((multi / "manifest.json").read_text())
    assert list(manifest) == list(STAGES)
    assert manifest["teacher1"] == single.run_dir.manifest["teacher1"]  # not retrained
    scores, single_scores = pd.read_parquet(multi / "scores.parquet"), single.read_table("scores")
    assert scores.id.tolist() == single_scores.id.tolist()
    assert scores.t1_tags.map(list).tolist() == single_scores.t1_tags.map(list).tolist()
    stores = LogitStore(multi / "teacher1_logits"), single.logit_store("teacher1")
    for sample in single.train:
        assert abs(stores[0][sample.id] - stores[1][sample.id]).max() < 1e-4
    assert pd.read_parquet(multi / "split.parquet").equals(single.read_table("split"))
    samples = pd.read_parquet(multi / "samples.parquet")
    assert samples.id.tolist() == [s.id for s in single.train]


def test_accelerate_launch_two_processes_full_contract(tmp_path, tiny_checkpoint, single):
    "Every stage, teacher 1 included, trained with DDP through `accelerate launch`: the run-directory contract holds."
    run = tmp_path / "accelerate"
    launch([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"], run, tiny_checkpoint, tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    assert list(manifest) == list(STAGES)
    for stage in ("teacher1", "score", "split"):  # same inputs, same fingerprints, whatever the number of processes
        assert manifest[stage]["fingerprint"] == single.run_dir.manifest[stage]["fingerprint"], stage
    for name in ("config.json", "report.json", "scores.parquet", "split.parquet", "relabel.parquet", "samples.parquet",
                 "teacher1/model/config.json", "teacher2/model/dense_head.json", "student/model/config.json"):
        assert (run / name).is_file(), name
    report = json.loads((run / "report.json").read_text())
    assert set(report) == set(STAGES)
    assert report["split"]["target"] + report["split"]["unqualified"] == len(single.train)
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
    assert not (run / "teacher1" / "work").exists()  # scratch removed once the stage was recorded
