"""The benchmark's command line on a tiny slice with a tiny model (so it cannot rot), and README's results section."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cascade_distill.benchmark import MODEL_NAMES

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from render import README_END, README_START, figures, readme_section, update_readme  # noqa: E402


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
        assert all(0.0 <= f1 <= 1.0 for f1 in seed["test_f1"].values() if f1 is not None)
    assert [p["train_sentences"] for p in result["scaling"]] == [60]
    assert {(r["model"], r["batch_size"]) for r in result["speed"]["speed"]} == {
        (m, b) for m in ("teacher1", "student", "student_onnx", "student_onnx_int8", "spacy") for b in (1, 32)}
    assert result["speed"]["size"]["student"]["parameters"] > 0
    assert all(0.0 <= seed["test_f1"]["spacy"] <= 1.0 for seed in result["seeds"])  # the spaCy baseline, per seed
    assert set(result["targets"]) == {
        "student_f1_ge_95pct_of_teacher1", "gold_student_ge_spacy", "student_ge_3x_spacy_at_batch_32",
        "student_ge_25x_teacher1_at_batch_32", "student_ge_150x_bert_base_at_batch_32", "student_weights_le_10mb",
        "cascade_student_above_kd_student", "onnx_int8_f1_within_half_point", "cascade_above_kd_by_pooled_std",
        "kd_above_gold_by_pooled_std", "teacher2_above_teacher1_on_unqualified_every_seed",
        "distilled_never_below_gold_phase_on_dev"}
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
        assert all(0.0 <= f1 <= 1.0 for f1 in seed["test_f1"].values())
        assert set(seed["wall_s"]) == {"transfer", "transfer_relabel", "student_kd_transfer", "student_cascade_transfer"}
        assert seed["memory"]["transfer_logits_mb"] > 0
    assert set(result["quality_transfer"]) == {"teacher1", "spacy", "student_gold", "student_kd", "student_cascade",
                                               "student_kd_transfer", "student_cascade_transfer"}
    assert result["quality_transfer"]["student_cascade"] == result["quality"]["student_cascade"]
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
