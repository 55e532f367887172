"""The benchmark's command line on a tiny slice with a tiny model (so it cannot rot), and README's results section."""
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cascade_distill.baselines import load_spacy_tagger
from cascade_distill.benchmark import MODEL_NAMES, BenchConfig, fork_run, load_model, run_seed, tagger
from cascade_distill.pipeline import Cascade
from cascade_distill.scoring import corpus_f1, unseen_entity_f1
from cascade_distill.store import stored_fingerprint
from cascade_distill.student import Student

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from render import README_END, README_START, figures, readme_section, update_readme  # noqa: E402
from targets import TARGETS, distillation_above_gold_phase, targets, teacher_targets, with_targets  # noqa: E402
import protocols  # noqa: E402  (bench/protocols.py)


def write_conll(samples, path):
    "Samples as a two-column CoNLL file."
    path.write_text("".join("".join(f"{t} {g}\n" for t, g in zip(s.tokens, s.tags)) + "\n" for s in samples))
    return path


def run_bench(*args):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, str(REPO / "bench" / "cascade_bench.py"), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=900)


def test_benchmark_smoke(tmp_path, tweets, tiny_checkpoint):
    files = {name: write_conll(tweets[name], tmp_path / f"{name}.txt") for name in ("train", "dev", "test")}
    out = tmp_path / "out"
    done = run_bench("--train", files["train"], "--dev", files["dev"], "--test", files["test"], "--work-dir",
                     tmp_path / "work", "--out", out, "--name", "smoke", "--checkpoint", tiny_checkpoint,
                     "--train-size", 120, "--seeds", "0,1", "--sweep", "1.0", "--scale-sizes", "60",
                     "--teacher-epochs", 1, "--student-epochs", 1, "--learning-rate", 1e-3, "--max-length", 64,
                     "--speed-sentences", 8, "--speed-repeats", 1, "--spacy-steps", 20, "--no-bert-base-speed",
                     "--levers", "teacher2_stop_dev", "--seed-levers", "teacher2_stop_dev", "--alphas", "0.9", "--temperatures", "1",
                     "--transfer")  # protocol (b): the other training tweets as unlabeled text
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "smoke.json").read_text())
    assert result["corpus"]["train_sentences"] == 120 and result["corpus"]["train_available"] == len(tweets["train"])
    assert [s["seed"] for s in result["seeds"]] == [0, 1]
    for seed in result["seeds"]:
        assert seed["target"] + seed["unqualified"] == 120
    # the reported test F1 are those of the saved models, recomputed here from the work directory
    test = tweets["test"]
    def f1_of(predict):
        return corpus_f1([s.tags for s in test], predict([s.tokens for s in test]))
    for seed in result["seeds"]:
        work = tmp_path / "work" / f"seed{seed['seed']}"
        for name in ("student_gold", "student_kd", "student_cascade"):
            student = Student.from_pretrained(work / name / "model")
            assert seed["test_f1"][name] == pytest.approx(f1_of(student.predict_tags), abs=1e-9), name
        teacher1 = tagger(*load_model("teacher1", work / "run" / "teacher1" / "model"), max_length=64)
        assert seed["test_f1"]["teacher1"] == pytest.approx(f1_of(lambda t: teacher1(t, 32)), abs=1e-9)
        assert seed["test_f1"]["spacy"] == pytest.approx(f1_of(load_spacy_tagger(work / "spacy" / "model").predict_tags),
                                                         abs=1e-9)
        assert seed["kept_phase"]["student_gold"] == "gold"
    assert result["quality"]["student_kd"]["values"] == [s["test_f1"]["student_kd"] for s in result["seeds"]]
    assert [p["train_sentences"] for p in result["scaling"]] == [60]
    assert {(r["model"], r["batch_size"]) for r in result["speed"]["speed"]} == {
        (m, b) for m in ("teacher1", "student", "student_onnx", "student_onnx_int8", "spacy") for b in (1, 32)}
    assert result["speed"]["size"]["student"]["parameters"] > 0
    assert set(result["targets"]) == {
        "student_f1_ge_95pct_of_teacher1", "gold_student_ge_spacy", "student_ge_3x_spacy_at_batch_32",
        "student_ge_25x_teacher1_at_batch_32", "student_ge_150x_bert_base_at_batch_32", "student_weights_le_10mb",
        "cascade_student_above_kd_student", "onnx_int8_f1_within_half_point", "cascade_above_kd_by_pooled_std",
        "kd_above_gold_by_pooled_std", "teacher2_above_teacher1_on_unqualified_every_seed",
        "distillation_above_gold_phase_on_dev"}
    assert result["targets"] == targets(result)  # judged by bench/targets.py, from the measurements in the JSON
    assert [s["seed"] for s in result["teacher2_fix"]["seeds"]] == [0, 1]
    assert result["levers"][0]["reran"] == ["teacher2"] and len(result["distillation_grid"]) == 1
    assert result["distillation_choice"] == result["distillation_grid"][0]
    assert [p["seed"] for p in result["seed_levers"]["teacher2_stop_dev"]] == [0, 1]
    assert result["seed_levers"]["teacher2_stop_dev"][0] == result["levers"][0]  # the first seed's lever, reused
    assert set(result["seed_levers_quality"]["teacher2_stop_dev"]) == {
        "quality", "cascade_above_kd_by_pooled_std", "kd_above_gold_by_pooled_std"}
    assert result["speed_ratios"]["student_over_bert_base_batch_32"] is None  # not timed here
    unlabeled = len(tweets["train"]) - 120
    for seed in result["transfer"]:  # protocol (b): the two transfer students, split counts and costs per seed
        assert seed["unlabeled"] == unlabeled and seed["target"] + seed["unqualified"] == unlabeled
        transfer = tmp_path / "work" / f"seed{seed['seed']}" / "transfer"
        for name in ("student_kd_transfer", "student_cascade_transfer"):
            student = Student.from_pretrained(transfer / name / "model")
            assert seed["test_f1"][name] == pytest.approx(f1_of(student.predict_tags), abs=1e-9), name
        assert set(seed["wall_s"]) == {"transfer", "transfer_relabel", "student_kd_transfer", "student_cascade_transfer"}
        assert seed["memory"]["transfer_logits_mb"] > 0
    assert set(result["quality_transfer"]) == {"teacher1", "spacy", "student_gold", "student_kd", "student_cascade",
                                               "student_kd_transfer", "student_cascade_transfer"}
    assert result["quality_transfer"]["student_cascade"] == result["quality"]["student_cascade"]
    # the unseen-entity F1 of a student, recomputed from its saved model
    work0 = tmp_path / "work" / "seed0"
    kd = Student.from_pretrained(work0 / "student_kd" / "model")
    train0 = Cascade(work0 / "run").train  # the seed's 120 gold tweets
    assert result["seeds"][0]["unseen"]["student_kd"] == unseen_entity_f1(train0, test, kd.predict_tags([s.tokens for s in test]))
    assert set(result["transfer"][0]["unseen"]) == {"student_kd_transfer", "student_cascade_transfer"}
    assert {"teacher1", "student_cascade_transfer", "spacy"} <= set(result["quality_unseen"])
    assert result["seeds"][0]["teacher1_epochs"]["epochs"] == 1 and len(result["seeds"][0]["teacher1_epochs"]["dev_curve"]) == 1
    assert "## Unseen entities and teacher 1's training" in (out / "smoke.md").read_text()
    assert set(result["targets_teachers"]) >= {"teacher1_ge_gold_student_plus_3", "shipped_unseen_ge_90pct_of_teacher1"}
    assert set(result["targets_transfer"]) == {"cascade_transfer_ge_95pct_of_teacher1", "cascade_transfer_above_spacy",
                                               "cascade_transfer_above_kd_transfer_by_pooled_std"}
    markdown = (out / "smoke.md").read_text()
    assert all(name in markdown for name in MODEL_NAMES.values())
    assert "## Teacher 2 on the unqualified samples" in markdown and "teacher2_stop_dev" in markdown
    assert "## α and T" in markdown and "## Levers on every seed" in markdown
    assert "## Transfer set" in markdown and "cascade + transfer set" in markdown
    assert "plotly" in (out / "smoke.html").read_text()
    # rendering again from the JSON gives the same Markdown
    (out / "smoke.md").unlink()
    again = run_bench("--render-only", "--out", out, "--name", "smoke")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "smoke.md").read_text() == markdown
    assert set(figures(result)) == {"quality", "speed", "cost", "sweep", "transfer"}
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{README_START}\nSTALE NUMBERS\n{README_END}\n\nafter\n")
    assert update_readme(readme, readme_section(result))
    assert not update_readme(readme, readme_section(result))  # idempotent
    assert readme.read_text().endswith("after\n") and "STALE NUMBERS" not in readme.read_text()
    with pytest.raises(ValueError, match="markers"):
        update_readme(files["train"], "x")


def test_rerun_with_changed_settings_recomputes_what_they_change(tmp_path, tweets, tiny_checkpoint):
    "A seed rerun in the same folder: a student setting retrains the students only, a spaCy setting spaCy only."
    train, dev, test = tweets["train"][:60], tweets["dev"][:20], tweets["test"][:20]
    bench = BenchConfig(seeds=(0,), checkpoint=tiny_checkpoint, teacher_epochs=1, student_epochs=1, learning_rate=1e-3,
                        max_length=64, spacy_steps=10)
    folder = tmp_path / "seed0"
    students = ("student_gold", "student_kd", "student_cascade")
    def stored():
        manifest = json.loads((folder / "run" / "manifest.json").read_text())
        return {"teacher1": manifest["teacher1"], "teacher2": manifest["teacher2"],
                "gold_phase": stored_fingerprint(folder / "student_kd" / "work" / "gold" / "final"),
                **{name: stored_fingerprint(folder / name / "result.json") for name in (*students, "spacy")}}
    first = run_seed(train, dev, test, folder, bench, 0)
    before = stored()
    assert run_seed(train, dev, test, folder, bench, 0) == first and stored() == before  # same settings: all reused
    changed_student = dataclasses.replace(bench, student_learning_rate=5e-3)
    second = run_seed(train, dev, test, folder, changed_student, 0)
    after = stored()
    assert {key: after[key] != before[key] for key in before} == {
        "teacher1": False, "teacher2": False, "gold_phase": True, "student_gold": True, "student_kd": True,
        "student_cascade": True, "spacy": False}
    assert second["test_f1"]["teacher1"] == first["test_f1"]["teacher1"]
    assert second["wall_s"]["spacy"] == first["wall_s"]["spacy"]  # read back, not trained again
    changed_spacy = dataclasses.replace(changed_student, spacy_steps=20)
    run_seed(train, dev, test, folder, changed_spacy, 0)
    last = stored()
    assert {key: last[key] != after[key] for key in after} == {
        "teacher1": False, "teacher2": False, "gold_phase": False, "student_gold": False, "student_kd": False,
        "student_cascade": False, "spacy": True}
    assert load_spacy_tagger(folder / "spacy" / "model").record["max_steps"] == 20


def test_a_fork_is_made_again_when_its_source_changed(tmp_path):
    "A forked run keeps its own later stages while the source's forked stages are the same, and is re-forked when not."
    source = tmp_path / "source"
    (source / "teacher1").mkdir(parents=True)
    (source / "data").mkdir()
    (source / "config.json").write_text("{}")
    (source / "data" / "train.parquet").write_bytes(b"rows")
    def finish_teacher1(weights: bytes, stage_fingerprint: str):
        (source / "teacher1" / "w.bin").write_bytes(weights)
        entry = {"fingerprint": stage_fingerprint, "files": {"teacher1/w.bin": hashlib.sha256(weights).hexdigest()}}
        (source / "manifest.json").write_text(json.dumps({"teacher1": entry}))
    finish_teacher1(b"first", "fp1")
    target = tmp_path / "fork"
    fork_run(source, target, stages=("teacher1",))
    assert (target / "teacher1" / "w.bin").read_bytes() == b"first"
    (target / "later_stage.txt").write_text("computed in the fork")
    fork_run(source, target, stages=("teacher1",))  # same source: the fork and its later work are kept
    assert (target / "later_stage.txt").is_file()
    finish_teacher1(b"second", "fp2")  # teacher 1 retrained in the source with other settings
    fork_run(source, target, stages=("teacher1",))
    assert (target / "teacher1" / "w.bin").read_bytes() == b"second" and not (target / "later_stage.txt").exists()
    assert json.loads((target / "manifest.json").read_text())["teacher1"]["fingerprint"] == "fp2"


def test_targets_live_in_bench_and_can_fail():
    "The committed result judged again: the same verdicts, and the distillation target fails when distillation lost."
    result = json.loads((REPO / "bench" / "results" / "conll2003.json").read_text())
    judged = with_targets(result)
    assert list(judged)[:len(result)] == list(result)  # the targets replace the stored ones in place
    assert set(judged["targets"]) <= set(TARGETS) and "distillation_above_gold_phase_on_dev" in judged["targets"]
    for key, target in result["targets"].items():
        if key in judged["targets"]:
            assert judged["targets"][key] == target, key
    lost = {"seeds": [{"kept_phase": {"student_gold": "gold", "student_kd": "distill", "student_cascade": "gold"}},
                      {"kept_phase": {"student_gold": "gold", "student_kd": "distill", "student_cascade": "distill"}}]}
    assert distillation_above_gold_phase(lost) == {"value": 0.75, "met": False}
    slower = json.loads(json.dumps(result))
    slower["speed_ratios"]["batch_32_end_to_end"] = 30.0
    assert targets(slower)["student_ge_25x_teacher1_at_batch_32"] == {"value": 30.0, "met": True}
    slower["speed_ratios"]["batch_32_end_to_end"] = 20.0
    assert targets(slower)["student_ge_25x_teacher1_at_batch_32"] == {"value": 20.0, "met": False}


def test_teacher_targets_can_fail():
    "Issue #21's targets on a made-up result: each is met or missed by its measurement, and n/a when its condition fails."
    def q(mean, std=0.01):
        return {"mean": mean, "std": std, "values": [mean]}
    result = {"quality": {"teacher1": q(0.80), "student_gold": q(0.75), "student_kd": q(0.78), "student_cascade": q(0.785)},
              "quality_unseen": {"teacher1": {"unseen": q(0.60)}, "student_cascade": {"unseen": q(0.50)}}}
    found = teacher_targets(result)
    assert found["teacher1_ge_gold_student_plus_3"]["met"] and found["distilled_above_gold_where_teacher_above"]["met"]
    assert found["shipped_unseen_ge_90pct_of_teacher1"] == {"value": 0.5 / 0.6, "met": False}
    assert not found["cascade_above_kd_by_pooled_std_with_or_without_transfer"]["met"]  # +0.005, pooled std 0.01
    result["quality"]["teacher1"] = q(0.74)
    weaker = teacher_targets(result)
    assert weaker["distilled_above_gold_where_teacher_above"] == {"value": None, "met": None}  # teacher 1 not above
    assert not weaker["teacher1_ge_gold_student_plus_3"]["met"]


def test_readme_protocols_come_from_the_jsons():
    "README's protocols section is what the committed protocol JSONs render to."
    readme = (REPO / "README.md").read_text()
    assert protocols.START in readme and protocols.END in readme
    results = protocols.load_results(REPO / "bench" / "results", protocols.PROTOCOLS)
    section = readme[readme.index(protocols.START): readme.index(protocols.END) + len(protocols.END)]
    assert section == protocols.protocols_section(results)


def test_bench_cli_errors(tmp_path):
    done = run_bench("--train", tmp_path / "missing.txt")
    assert done.returncode != 0 and "required" in done.stderr
    bad = tmp_path / "bad.txt"
    bad.write_text("Paris B-LOC\nis\n")
    done = run_bench("--train", bad, "--dev", bad, "--test", bad, "--work-dir", tmp_path / "w")
    assert done.returncode != 0 and "bad.txt:2" in done.stderr


def test_readme_results_come_from_the_json():
    "README's benchmark section is exactly what the committed JSON renders to (never typed by hand)."
    results = REPO / "bench" / "results" / "conll2003.json"
    readme = (REPO / "README.md").read_text()
    assert README_START in readme and README_END in readme
    if not results.exists():
        pytest.skip("no committed benchmark results yet")
    section = readme[readme.index(README_START): readme.index(README_END) + len(README_END)]
    assert section == readme_section(json.loads(results.read_text()), "bench/results")


def test_guard_summary_pairs_each_seed_with_its_unguarded_result(tmp_path):
    import guard_summary  # bench/guard_summary.py
    def cached(path, result):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"fingerprint": "x", "result": result}))
    def results(folder, cascade_test, cascade_unseen):
        cached(folder / "result.json", {"test_f1": {"student_kd_transfer": 0.70, "student_cascade_transfer": cascade_test},
                                        "kept_phase": {"student_kd_transfer": "distill",
                                                       "student_cascade_transfer": "distill"}})
        cached(folder / "unseen.json", {"student_kd_transfer": {"unseen_f1": 0.60},
                                        "student_cascade_transfer": {"unseen_f1": cascade_unseen}})
    for seed, (before, after) in enumerate([(0.60, 0.70), (0.64, 0.69)]):
        transfer = tmp_path / "work" / f"seed{seed}" / "transfer"
        results(tmp_path / "unguarded" / "p200" / f"seed{seed}", before, before - 0.1)
        results(transfer, after, after - 0.05)
        cached(transfer / "student_cascade_transfer" / "result.json", {"same_as": "student_kd_transfer"} if seed == 0 else {})
        (transfer / "run").mkdir()
        (transfer / "run" / "manifest.json").write_text(json.dumps({"transfer_relabel": {"metrics": {
            "teacher2_relabels": False, "guard_t1_f1": 0.66, "guard_t2_f1": 0.35, "unqualified": 10}}}))
    out = tmp_path / "guard.json"
    assert guard_summary.main(["--protocol", f"200={tmp_path / 'work'}", "--unguarded-dir", str(tmp_path / "unguarded"),
                               "--out", str(out)]) == 0
    summary = json.loads(out.read_text())["protocols"]["200"]
    assert [s["cascade_trained_as"] for s in summary["seeds"]] == ["student_kd_transfer", "student_cascade_transfer"]
    assert [s["cascade_change"]["test_f1"] for s in summary["seeds"]] == [0.1, 0.05]
    assert [s["cascade_change"]["unseen_f1"] for s in summary["seeds"]] == [0.15, 0.1]
    assert summary["cascade_change"]["test_f1"]["mean"] == pytest.approx(0.075)
    assert summary["summary"]["guarded_student_kd_transfer_test_f1"]["std"] == 0.0  # KD + transfer: the same both times
    assert summary["seeds"][0]["guard_t2_f1"] == 0.35 and summary["seeds"][0]["teacher2_relabels"] is False
