"""The cascade end to end on tiny models: run-directory contract, caching, determinism, resume after a kill, CLI."""
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import lock_held_elsewhere

from cascade_distill.cli import main
from cascade_distill.config import FORMAT_VERSION
from cascade_distill.pipeline import STAGES, Cascade, CascadeConfig
from cascade_distill.scoring import SCORES, score_column
from cascade_distill.store import RunDirLocked
from cascade_distill.training import TrainConfig

TESTS = str(Path(__file__).parent)
QUICK = TrainConfig(max_epochs=2, patience=1, learning_rate=5e-3, max_length=64, progress=False, seed=1)


def tiny_config(checkpoint, **changes):
    return CascadeConfig(checkpoint=checkpoint, teacher1=QUICK, teacher2=QUICK,
                         student_training=dataclasses.replace(QUICK, learning_rate=3e-3, max_epochs=3), seed=1, **changes)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_checkpoint, tweets):
    cascade = Cascade(tmp_path_factory.mktemp("run") / "r", tiny_config(tiny_checkpoint), **tweets)
    cascade.run()
    return cascade


def test_run_directory_contract(finished_run, tweets):
    run = finished_run.run_dir.path
    for name in ("config.json", "manifest.json", "report.json", "scores.parquet", "split.parquet", "relabel.parquet",
                 "samples.parquet", "data/train.parquet", "teacher1/model/config.json", "student/model/config.json"):
        assert (run / name).is_file(), name
    report = json.loads((run / "report.json").read_text())
    assert set(report) == set(STAGES)
    assert report["split"]["target"] + report["split"]["unqualified"] == len(tweets["train"])
    for stage, key in [("teacher1", "test_f1"), ("student", "test_f1"), ("student", "speedup")]:
        assert report[stage][key] is not None
    table = pd.read_parquet(run / "samples.parquet")
    assert table.id.tolist() == [s.id for s in tweets["train"]]
    for col in ("tokens", "gold_tags", "t1_tags", "t2_tags", "t1_f1", "t1_cosine", "t1_confidence", "t1_euclidean",
                "t1_focal", "t2_focal", "route", "source", "soft_logits"):
        assert col in table.columns, col
    assert not list(run.rglob(".*tmp*")), "temporary files were left behind"


def test_nothing_recomputed_and_threshold_moves_only_split(finished_run):
    manifest = finished_run.run_dir.manifest
    finished_run.run()
    assert finished_run.run_dir.manifest == manifest
    routes = finished_run.split_table(threshold=0.0).route
    assert (routes == "target").all()
    assert finished_run.run_dir.manifest == manifest  # a preview writes nothing


def test_split_by_share_on_window_scores(tmp_path, finished_run):
    "A share and score windows: the score stage adds window columns; the split routes round(share * n) samples on them."
    run = shutil.copytree(finished_run.run_dir.path, tmp_path / "share")
    cascade = Cascade(run, dataclasses.replace(finished_run.config, unqualified_share=0.25, score_window=4, score="focal"))
    before = cascade.run_dir.manifest
    cascade.run_split()
    assert cascade.run_dir.manifest["teacher1"] == before["teacher1"]  # teacher 1 is reused, only re-scored
    scores, split = cascade.read_table("scores"), cascade.read_table("split")
    for score in SCORES:
        assert {score_column(score), score_column(score, window=True)} <= set(scores.columns)
    assert "t1_focal_window" == score_column("focal", window=True)
    assert (scores.t1_focal_window != scores.t1_focal).any()  # windows of 4 words cut the tweets
    assert split.score.tolist() == scores.t1_focal_window.tolist()
    n_unqualified = round(0.25 * len(cascade.train))
    assert (split.route == "unqualified").sum() == n_unqualified
    lowest = scores.t1_focal_window.sort_values(kind="stable").index[:n_unqualified]
    assert set(split.id[split.route == "unqualified"]) == set(scores.id[lowest])
    metrics = cascade.run_dir.metrics("split")
    assert metrics["unqualified_share"] == 0.25
    assert metrics["threshold"] == split.score[split.route == "target"].min()
    assert metrics["rule"] == f"focal per window ≥ {metrics['threshold']:.2f}, the lowest 25.0% unqualified"
    report = cascade.report_table().set_index("metric")
    assert report.loc[f"target ({metrics['rule']})", "value"] == len(cascade.train) - n_unqualified


def test_overrides_change_what_the_student_learns(finished_run):
    samples, soft = finished_run.distillation_targets()
    first = samples[0].id
    finished_run.set_overrides({first: "drop"})
    try:
        kept, _ = finished_run.distillation_targets()
        assert first not in {s.id for s in kept} and len(kept) == len(samples) - 1
        finished_run.set_overrides({first: "gold"})
        _, soft_gold = finished_run.distillation_targets()
        assert soft_gold[0] is None and soft[0] is not None
        assert finished_run.fingerprints()["student"] != finished_run.run_dir.manifest["student"]["fingerprint"]
    finally:
        finished_run.set_overrides({first: None})
    with pytest.raises(ValueError, match="override source must be one of"):
        finished_run.set_overrides({first: "teacher3"})


def test_run_directory_of_the_earlier_layout_opens_finished(tmp_path, finished_run):
    "A run written before the stores were named after their teachers (and `student` held the training settings)."
    earlier = tmp_path / "earlier"
    shutil.copytree(finished_run.run_dir.path, earlier)
    for old, new in (("scores_logits", "teacher1_logits"), ("relabel_logits", "teacher2_logits")):
        (earlier / new).rename(earlier / old)
    manifest_text = (earlier / "manifest.json").read_text()
    (earlier / "manifest.json").write_text(manifest_text.replace('"teacher1_logits/', '"scores_logits/')
                                           .replace('"teacher2_logits/', '"relabel_logits/'))
    config = json.loads((earlier / "config.json").read_text())
    del config["format_version"]  # the unversioned layout
    config["student"] = config.pop("student_training")
    del config["student_model"]
    (earlier / "config.json").write_text(json.dumps(config))
    reopened = Cascade(earlier)
    assert reopened.config == finished_run.config
    migrated = json.loads((earlier / "config.json").read_text())  # rewritten once, in today's layout
    assert migrated["format_version"] == FORMAT_VERSION and "student" not in migrated and "student_training" in migrated
    assert all(reopened.run_dir.finished(stage, fp) for stage, fp in reopened.fingerprints().items())
    assert list(reopened.fingerprints()) == list(STAGES)
    before = reopened.run_dir.manifest
    reopened.run()
    assert reopened.run_dir.manifest == before  # nothing ran again
    assert len(reopened.logit_store("teacher1")) == len(reopened.train)


def test_run_directory_of_a_newer_format_version_is_refused(tmp_path, finished_run):
    newer = tmp_path / "newer"
    shutil.copytree(finished_run.run_dir.path, newer)
    config = json.loads((newer / "config.json").read_text())
    newer_version = FORMAT_VERSION + 1
    (newer / "config.json").write_text(json.dumps({**config, "format_version": newer_version}))
    with pytest.raises(ValueError, match=f"{newer / 'config.json'}: format version {newer_version} is newer than this "
                                         "cascade_distill"):
        Cascade(newer)
    assert json.loads((newer / "config.json").read_text())["format_version"] == newer_version  # left as it was


def _conll_files(tmp_path, tweets) -> dict:
    files = {}
    for name, samples in tweets.items():
        files[name] = tmp_path / f"{name}.txt"
        files[name].write_text("\n\n".join("\n".join(f"{t}\t{g}" for t, g in zip(s.tokens, s.tags))
                                            for s in samples) + "\n")
    return files


@pytest.mark.parametrize("flags, problem", [(["--student-width", "0"], "student_model.width must be at least 1"),
                                            (["--max-epochs", "0"], "teacher1: max_epochs must be at least 1"),
                                            (["--alpha", "1.5"], "alpha must be between 0 and 1, got 1.5")])
def test_invalid_setting_fails_before_teacher1_trains(tmp_path, tiny_checkpoint, tweets, capsys, flags, problem):
    "A bad option stops `run` with the setting and its range before any stage: no teacher1/ in the run directory."
    files = _conll_files(tmp_path, tweets)
    run = tmp_path / "run"
    status = main(["run", "--train", str(files["train"]), "--dev", str(files["dev"]), "--run-dir", str(run),
                   "--checkpoint", tiny_checkpoint, "--max-length", "64", *flags])
    assert status == 2
    assert problem in capsys.readouterr().err
    assert not (run / "teacher1").exists()


def test_invalid_stored_setting_fails_before_teacher1_trains(tmp_path, tiny_checkpoint, tweets):
    "A config.json edited by hand to an invalid value is refused when the run opens, naming the file."
    run = tmp_path / "edited"
    Cascade(run, tiny_config(tiny_checkpoint), **tweets)  # opened, nothing run
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "alpha": 1.5}))
    with pytest.raises(ValueError, match=r"config.json: cannot read this run's config \(alpha must be between 0 and 1"):
        Cascade(run).run()
    assert not (run / "teacher1").exists()


def test_reopening_a_run_another_process_writes_to_reads_without_the_lock(tmp_path, finished_run):
    "Opening a run (a widget, a report) takes no lock; running it while another live process holds it is refused."
    busy = tmp_path / "busy"
    shutil.copytree(finished_run.run_dir.path, busy, ignore=shutil.ignore_patterns(".lock*"))
    with lock_held_elsewhere(busy) as writer:  # a live writer holds the run directory's OS lock
        reopened = Cascade(busy)
        assert reopened.report() == finished_run.report()
        with pytest.raises(RunDirLocked, match=f"process {writer.pid}"):
            reopened.run()


def test_student_architecture_from_the_run_config(tmp_path, finished_run):
    "A changed `student_model` retrains the student only, with that architecture."
    changed = tmp_path / "changed"
    shutil.copytree(finished_run.run_dir.path, changed)
    cascade = Cascade(changed, dataclasses.replace(finished_run.config, student_model={"width": 8, "kernel_sizes": (3,)}))
    before = cascade.run_dir.manifest
    cascade.run()
    after = cascade.run_dir.manifest
    assert all(after[stage] == before[stage] for stage in STAGES[:-1])
    assert after["student"]["finished_at"] != before["student"]["finished_at"]
    student = cascade.load_student()
    assert (student.config.width, student.config.kernel_sizes) == (8, (3,))


def test_same_seed_same_split_and_student(tmp_path, tiny_checkpoint, tweets, finished_run):
    again = Cascade(tmp_path / "again", tiny_config(tiny_checkpoint), **tweets)
    again.run()
    assert again.read_table("split").equals(finished_run.read_table("split"))
    tokens = [s.tokens for s in tweets["test"]]
    assert again.load_student().predict_tags(tokens) == finished_run.load_student().predict_tags(tokens)


KILL_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[3])
from test_pipeline import tiny_config
from cascade_distill.data import demo_corpus
from cascade_distill.pipeline import Cascade
Cascade(sys.argv[1], tiny_config(sys.argv[2]), **demo_corpus(seed=0, limit=240)).run()
"""


def _run_until(run_dir: Path, checkpoint: str, ready) -> None:
    "Start a cascade in a subprocess and SIGKILL it as soon as `ready()` is true."
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(run_dir), checkpoint, TESTS])
    deadline = time.time() + 300
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_killed_mid_training_resumes_and_matches_uninterrupted_run(tmp_path, tiny_checkpoint, finished_run):
    "Killed after teacher 1's first epoch checkpoint, the resumed run ends where the uninterrupted one did."
    killed = tmp_path / "killed"
    checkpoints = killed / "teacher1" / "work" / "checkpoints"
    _run_until(killed, tiny_checkpoint, lambda: any(checkpoints.glob("checkpoint-*/trainer_state.json")))
    manifest = json.loads((killed / "manifest.json").read_text()) if (killed / "manifest.json").exists() else {}
    assert "teacher1" not in manifest and not (killed / "teacher1" / "model").exists()
    resumed_from = sorted(checkpoints.glob("checkpoint-*"))
    assert resumed_from
    subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(killed), tiny_checkpoint, TESTS], check=True)
    clean = finished_run.run_dir.path  # same data, config and seed, never interrupted
    for name in ("split.parquet", "samples.parquet"):
        assert pd.read_parquet(killed / name).equals(pd.read_parquet(clean / name)), name
    killed_report = json.loads((killed / "report.json").read_text())
    clean_report = json.loads((clean / "report.json").read_text())
    for stage, key in [("teacher1", "dev_f1"), ("teacher1", "test_f1"), ("student", "test_f1")]:
        assert killed_report[stage][key] == clean_report[stage][key], (stage, key)


def test_cli_run_and_predict(tmp_path, tiny_checkpoint, tweets, capsys):
    files = _conll_files(tmp_path, tweets)
    status = main(["run", "--train", str(files["train"]), "--dev", str(files["dev"]), "--test", str(files["test"]),
                   "--run-dir", str(tmp_path / "run"), "--checkpoint", tiny_checkpoint, "--max-epochs", "1",
                   "--student-max-epochs", "1", "--max-length", "64", "--threshold", "0.8",
                   "--student-width", "16", "--student-kernel-sizes", "3", "5"])
    out = capsys.readouterr().out
    assert status == 0
    student_config = json.loads((tmp_path / "run" / "student" / "model" / "config.json").read_text())
    assert (student_config["width"], student_config["kernel_sizes"]) == (16, [3, 5])  # the architecture options
    assert "teacher1" in out and "test F1" in out and "unqualified" in out and "speed vs teacher 1" in out
    texts = tmp_path / "texts.txt"
    texts.write_text("Going to New York with Justin Bieber\nnothing here\n")
    status = main(["predict", "--model", str(tmp_path / "run" / "student" / "model"), "--input", str(texts),
                   "--output", str(tmp_path / "spans.jsonl")])
    lines = [json.loads(l) for l in (tmp_path / "spans.jsonl").read_text().splitlines()]
    assert status == 0 and [l["text"] for l in lines] == texts.read_text().splitlines()
    for line in lines:
        for span in line["spans"]:
            assert line["text"][span["start"]:span["end"]] == span["text"]


def test_cli_bad_dev_label_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "train.txt").write_text("Paris B-LOC\n")
    (tmp_path / "dev.txt").write_text("Apple B-ORG\n")
    status = main(["run", "--train", str(tmp_path / "train.txt"), "--dev", str(tmp_path / "dev.txt")])
    assert status == 2
    assert f"{tmp_path / 'dev.txt'}:1: tag 'B-ORG' is not in the label set" in capsys.readouterr().err


def test_report_shows_both_phases_and_the_verdict(finished_run, capsys):
    "Both student phases with dev and test F1, the kept phase, teacher 1's epochs, and the verdict under the CLI table."
    from cascade_distill.cli import print_report
    from cascade_distill.pipeline import distillation_verdict
    report = finished_run.report()
    student, teacher1 = report["student"], report["teacher1"]
    kept = student["kept_phase"]
    assert {"gold_dev_f1", "distill_dev_f1", "gold_test_f1", "distill_test_f1"} <= set(student)
    assert student["test_f1"] == student[f"{kept}_test_f1"] and student["dev_f1"] == student[f"{kept}_dev_f1"]
    assert student["verdict"] == distillation_verdict(student, teacher1)
    assert ("raised" in student["verdict"]) == (kept == "distill")
    assert json.loads((finished_run.run_dir / "report.json").read_text())["student"]["verdict"] == student["verdict"]
    assert len(teacher1["dev_curve"]) == teacher1["epochs"] and max(teacher1["dev_curve"]) == pytest.approx(
        teacher1["dev_f1"], abs=1e-4)
    table = finished_run.report_table()
    assert table.iloc[-1].tolist() == ["student", "verdict", student["verdict"]]
    values = table.set_index(["stage", "metric"]).value
    assert values["student", "gold-only phase: test F1"] == student["gold_test_f1"]
    assert values["student", "distilled phase: dev F1"] == student["distill_dev_f1"]
    assert values["teacher1", "best epoch (dev F1)"] == teacher1["best_epoch"]
    print_report(finished_run)
    out = capsys.readouterr().out
    printed_table, after = out.split("\nverdict: ")
    assert "verdict" not in printed_table and f"gold-only phase: test F1 {student['gold_test_f1']:.4f}" in " ".join(
        printed_table.split())
    assert f"epochs trained {int(teacher1['epochs'])}" in " ".join(printed_table.split())
    assert " ".join(after.split()).startswith(" ".join(student["verdict"].split()))


def test_synthetic_transfer_option_makes_the_transfer_set_from_the_training_sentences(tmp_path, tweets):
    from cascade_distill.cli import build_parser, unlabeled_from_args
    args = build_parser().parse_args(["demo", "--synthetic-transfer", "7", "--seed", "3"])
    made = unlabeled_from_args(args, tweets["train"])
    assert [s.id for s in made] == [f"syn{i}" for i in range(7)] and {t for s in made for t in s.tags} == {"O"}
    assert [s.tokens for s in unlabeled_from_args(args, tweets["train"])] == [s.tokens for s in made]  # seeded
    text = tmp_path / "text.txt"
    text.write_text("Paris is nice\n")
    given = build_parser().parse_args(["demo", "--synthetic-transfer", "7", "--unlabeled", str(text)])
    assert [s.tokens for s in unlabeled_from_args(given, tweets["train"])] == [["Paris", "is", "nice"]]  # the text wins
    assert unlabeled_from_args(build_parser().parse_args(["demo"]), tweets["train"]) == []
