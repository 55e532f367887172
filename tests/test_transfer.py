"""Unlabeled text as a transfer set (issue #10): a tiny cascade with an unlabeled file, end to end."""
import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from cascade_distill.data import DataError, demo_corpus_path, read_conll, read_unlabeled
from cascade_distill.pipeline import ALL_STAGES, STAGES, Cascade, CascadeConfig, teacher2_guard
from cascade_distill.training import TrainConfig

QUICK = TrainConfig(max_epochs=2, patience=1, learning_rate=5e-3, max_length=64, progress=False, seed=1)


def tiny_config(checkpoint, **changes):
    return CascadeConfig(checkpoint=checkpoint, teacher1=QUICK, teacher2=QUICK,
                         student_training=dataclasses.replace(QUICK, learning_rate=3e-3, max_epochs=2), seed=1,
                         **changes)


def finished_at(cascade):
    return {stage: entry["finished_at"] for stage, entry in cascade.run_dir.manifest.items()}


def rerun(before: dict, after: dict) -> set:
    "The stages whose manifest entry is new or changed."
    return {stage for stage in after if before.get(stage) != after[stage]}


@pytest.fixture(scope="module")
def raw_tweets():
    "60 tweets the tiny cascade does not train on, as plain text lines (their tags dropped)."
    return [" ".join(s.tokens) for s in read_conll(demo_corpus_path(), id_prefix="tweet")[240:300]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_checkpoint, tweets, raw_tweets):
    "A run without unlabeled data, then the same run given an unlabeled file."
    folder = tmp_path_factory.mktemp("transfer")
    cascade = Cascade(folder / "run", tiny_config(tiny_checkpoint), **tweets)
    plain_report = cascade.run()
    plain = {"report": plain_report, "manifest": finished_at(cascade),
             "fingerprints": {k: v["fingerprint"] for k, v in cascade.run_dir.manifest.items()}}
    text = folder / "unlabeled.txt"
    text.write_text("\n".join(raw_tweets) + "\n")
    with_text = Cascade(folder / "run", unlabeled=read_unlabeled(text))
    report = with_text.run()
    return {"plain": plain, "cascade": with_text, "report": report, "folder": folder}


def test_run_without_unlabeled_data_is_unchanged(runs):
    plain = runs["plain"]
    assert set(plain["report"]) == set(STAGES)  # no transfer stage in the report or the manifest
    assert set(plain["manifest"]) == set(STAGES)


def test_unlabeled_file_adds_only_the_transfer_stages(runs, raw_tweets):
    cascade, plain = runs["cascade"], runs["plain"]
    assert cascade.stages() == list(ALL_STAGES)
    assert set(runs["report"]) == set(ALL_STAGES)
    after = finished_at(cascade)
    assert rerun(plain["manifest"], after) == {"transfer", "transfer_relabel", "student"}  # teachers reused
    run = cascade.run_dir.path
    for name in ("data/unlabeled.parquet", "transfer.parquet", "transfer_relabel.parquet",
                 "transfer_logits/index.parquet", "transfer_teacher2_logits/index.parquet"):
        assert (run / name).is_file(), name
    assert runs["report"]["transfer"]["unlabeled"] == len(raw_tweets)
    rows = cascade.report_table()
    assert {"transfer", "transfer_relabel"} <= set(rows.stage)


def test_routes_follow_teacher1_confidence(runs):
    cascade = runs["cascade"]
    table = cascade.read_table("transfer_relabel")
    assert table.id.tolist() == [f"u{i}" for i in range(len(table))]
    threshold = cascade.config.unlabeled_threshold
    assert (table.route == np.where(table.confidence >= threshold, "target", "unqualified")).all()
    store = cascade.logit_store("transfer_teacher1")
    for sample_id, confidence in zip(table.id[:10], table.confidence[:10]):  # lowest word's top probability
        logits = store[sample_id].astype(np.float64)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        assert confidence == pytest.approx(probs.max(-1).min(), rel=1e-5)
    relabelled = table.t2_tags.notna()
    assert ((table.route == "target") <= (table.source == "t1")).all()
    assert (table.source[table.route == "unqualified"].isin(["t2", "t1"])).all()  # the guard: never dropped
    assert (relabelled == (table.source == "t2")).all()
    assert not any(c for c, r in zip(table.changed, relabelled) if not r)  # only teacher 2 changes labels


def test_guard_lets_teacher2_relabel_only_where_it_beats_teacher1(runs, tmp_path):
    cascade = runs["cascade"]
    relabel = runs["report"]["transfer_relabel"]
    table = cascade.read_table("transfer_relabel")
    unsure_sources = set(table.source[table.route == "unqualified"])
    assert relabel["unqualified"] > 0 and "guard" in relabel
    if "guard_t2_f1" in relabel:  # a teacher 2 was trained: judged on the dev samples teacher 1 is unsure of
        assert relabel["teacher2_relabels"] == (relabel["guard_t2_f1"] > relabel["guard_t1_f1"])
    assert unsure_sources == ({"t2"} if relabel["teacher2_relabels"] else {"t1"})
    assert relabel["relabelled"] == (relabel["unqualified"] if relabel["teacher2_relabels"] else 0)
    as_itself = teacher2_guard(cascade, cascade.load_teacher1())  # a "teacher 2" no better than teacher 1
    assert not as_itself["teacher2_relabels"] and as_itself["guard_t2_f1"] == as_itself["guard_t1_f1"]
    assert "teacher 1's labels stand" in as_itself["guard"]
    assert teacher2_guard(cascade, None) == {"teacher2_relabels": False,
                                             "guard": "no teacher 2 was trained (no unqualified training samples)"}
    shutil.copytree(cascade.run_dir.path, tmp_path / "run", ignore=shutil.ignore_patterns(".lock"))
    unguarded = Cascade(tmp_path / "run", dataclasses.replace(cascade.config, teacher2_guard=False))
    assert unguarded.fingerprints()["transfer_relabel"] != cascade.fingerprints()["transfer_relabel"]
    assert unguarded.fingerprints()["teacher2"] == cascade.fingerprints()["teacher2"]
    report = unguarded.run_stage("transfer_relabel")
    has_teacher2 = "guard_t2_f1" in relabel
    assert "guard" not in report and report["relabelled"] == (report["unqualified"] if has_teacher2 else 0)
    unguarded_table = unguarded.read_table("transfer_relabel")  # as before the guard: teacher 2 relabels, or drop
    assert set(unguarded_table.source[unguarded_table.route == "unqualified"]) == ({"t2"} if has_teacher2 else {"drop"})


def test_student_learns_the_routed_transfer_set(runs):
    cascade = runs["cascade"]
    table = cascade.read_table("transfer_relabel").set_index("id")
    kept, logits = cascade.transfer_targets()
    assert [s.id for s in kept] == [i for i in table.index if table.source[i] != "drop"]
    stores = {"t1": cascade.logit_store("transfer_teacher1"), "t2": cascade.logit_store("transfer_teacher2")}
    for sample, soft in zip(kept, logits):
        np.testing.assert_array_equal(soft, stores[table.source[sample.id]][sample.id])
    assert runs["report"]["student"]["transfer"] == len(kept)
    assert runs["report"]["student"]["trained_on"] == len(cascade.train)  # the gold samples, apart
    vocab = set(cascade.load_student().featurizer.vocab)
    assert {w.lower() for s in kept for w in s.tokens} <= vocab  # the unlabeled words are in the word table


def test_threshold_and_file_changes_rerun_only_what_depends_on_them(runs, raw_tweets):
    cascade, folder = runs["cascade"], runs["folder"]
    confidences = cascade.read_table("transfer").confidence
    middle = float(np.median(confidences))
    before = finished_at(cascade)
    moved = Cascade(folder / "run", dataclasses.replace(cascade.config, unlabeled_threshold=middle))
    report = moved.run()
    assert rerun(before, finished_at(moved)) == {"transfer_relabel", "student"}
    assert report["transfer_relabel"]["target"] == int((confidences >= middle).sum())
    assert 0 < report["transfer_relabel"]["target"] < len(raw_tweets)  # both routes taken
    before = finished_at(moved)
    fewer = folder / "fewer.jsonl"
    fewer.write_text("".join(json.dumps({"text": t}) + "\n" for t in raw_tweets[:40]))
    changed = Cascade(folder / "run", unlabeled=read_unlabeled(fewer))
    report = changed.run()
    assert rerun(before, finished_at(changed)) == {"transfer", "transfer_relabel", "student"}
    assert report["transfer"]["unlabeled"] == 40
    before = finished_at(changed)
    again = Cascade(folder / "run", unlabeled=read_unlabeled(fewer)[:30])
    again.run_student()  # the student needs the routed transfer set: both transfer stages run first
    assert rerun(before, finished_at(again)) == {"transfer", "transfer_relabel", "student"}
    removed = Cascade(folder / "run", unlabeled=[])
    assert removed.stages() == list(STAGES) and not (folder / "run" / "data" / "unlabeled.parquet").exists()
    assert removed.fingerprints() == runs["plain"]["fingerprints"]  # back to the run without unlabeled data


def test_unlabeled_ids_must_differ_from_gold_ids(runs):
    cascade = runs["cascade"]
    clash = read_unlabeled(runs["folder"] / "unlabeled.txt", id_prefix="")
    clash[0].id = cascade.train[0].id
    with pytest.raises(ValueError, match="also the id of a gold sample"):
        Cascade(cascade.run_dir.path, unlabeled=clash)


def test_bad_unlabeled_file_names_file_and_line(tmp_path):
    bad = tmp_path / "texts.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "wrong key"}\n')
    with pytest.raises(DataError, match=r"texts.jsonl:2: no text: expected key 'text'"):
        read_unlabeled(bad)
    bad.write_text('{"text": "fine"}\n\n{"text": 3}\n')
    with pytest.raises(DataError, match=r"texts.jsonl:3: expected a text"):
        read_unlabeled(bad)


def test_cli_run_with_an_unlabeled_file(tmp_path, tiny_checkpoint, tweets, raw_tweets, capsys):
    from cascade_distill.cli import main
    files = {}
    for name in ("train", "dev"):
        files[name] = tmp_path / f"{name}.txt"
        files[name].write_text("".join("".join(f"{t} {g}\n" for t, g in zip(s.tokens, s.tags)) + "\n"
                                       for s in tweets[name]))
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in raw_tweets[:30]))
    status = main([str(a) for a in ["run", "--train", files["train"], "--dev", files["dev"], "--unlabeled", texts,
                                    "--unlabeled-threshold", "0.5", "--checkpoint", tiny_checkpoint, "--max-epochs", 1,
                                    "--student-max-epochs", 1, "--max-length", 64, "--quiet", "--run-dir",
                                    tmp_path / "run"]])
    assert status == 0
    assert "unlabeled, unsure" in capsys.readouterr().out
    cascade = Cascade(tmp_path / "run")
    assert cascade.config.unlabeled_threshold == 0.5 and len(cascade.unlabeled) == 30
    assert set(cascade.report()) == set(ALL_STAGES)
