"""Whether the teachers helped: both student phases scored (on dev and test) from their saved folders, and the verdict
in words for every case (distillation won; lost with a weaker or a stronger teacher; teacher 1 capped; no change; no
distillation phase; no student yet)."""
import dataclasses

import numpy as np
import pytest

from cascade_distill.data import demo_corpus, label_list
from cascade_distill.pipeline import distillation_verdict
from cascade_distill.scoring import corpus_f1
from cascade_distill.student import StudentConfig, phase_f1s, phase_student, train_student
from cascade_distill.training import TrainConfig, best_epoch

FAST = TrainConfig(max_epochs=2, patience=1, batch_size=16, eval_batch_size=64, learning_rate=3e-3, progress=False)


@pytest.fixture(scope="module")
def phases(tmp_path_factory):
    "A student trained on 120 tweets, gold then distilled from a noisy teacher; both phases in their folders."
    corpus = demo_corpus(limit=150)
    labels = label_list(corpus["train"] + corpus["dev"])
    label2id = {label: i for i, label in enumerate(labels)}
    rng = np.random.default_rng(2)
    teacher = [4.0 * np.eye(len(labels), dtype=np.float32)[[label2id[t] for t in s.tags]]
               + 3.0 * rng.normal(size=(len(s.tokens), len(labels))).astype(np.float32) for s in corpus["train"]]
    folder = tmp_path_factory.mktemp("phases") / "student"
    small = StudentConfig(labels, word_dim=16, width=24, depth=2, kernel_sizes=(3, 5))
    student, history = train_student(corpus["train"], corpus["dev"], labels, folder, teacher, FAST, small,
                                     temperature=1.0, alpha=0.3)
    return corpus, folder, student, history


def test_each_phase_is_scored_from_its_own_folder(phases):
    corpus, folder, student, history = phases
    dev = corpus["dev"]
    by_phase = phase_f1s(student, folder, history, dev)
    assert set(by_phase) == {"gold", "distill"}
    for phase in ("gold", "distill"):  # each phase's saved weights give the dev F1 its log recorded for its best epoch
        assert by_phase[phase] == pytest.approx(best_epoch(history[phase])["eval_f1"], abs=1e-6), phase
    kept, other = history["kept"], {"gold": "distill", "distill": "gold"}[history["kept"]]
    assert by_phase[kept] == corpus_f1([s.tags for s in dev], student.predict_tags([s.tokens for s in dev]))
    reloaded = phase_student(student, folder, other)
    assert reloaded.featurizer is student.featurizer  # the same words and features, the other phase's weights
    assert not all(np.array_equal(a, b) for a, b in zip(reloaded.model.state_dict().values(),
                                                        student.model.state_dict().values()))
    test = corpus["test"]
    on_test = phase_f1s(student, folder, history, test)
    assert on_test[other] == corpus_f1([s.tags for s in test], reloaded.predict_tags([s.tokens for s in test]))


def test_a_missing_phase_folder_is_named(phases, tmp_path):
    _, _, student, _ = phases
    with pytest.raises(FileNotFoundError, match=r"nowhere/gold/final/model.safetensors: no finished gold phase"):
        phase_student(student, tmp_path / "nowhere", "gold")


WEAK_CONVERGED = {"dev_f1": 0.771, "epochs": 6.0, "best_epoch": 4.0}


@pytest.mark.parametrize("student, teacher1, expected", [
    ({"gold_dev_f1": 0.812, "distill_dev_f1": 0.836, "kept_phase": "distill"}, WEAK_CONVERGED,
     "distillation raised dev F1 from 0.812 to 0.836: the distilled student ships"),
    ({"gold_dev_f1": 0.812, "distill_dev_f1": 0.836, "kept_phase": "distill", "gold_test_f1": 0.8011,
      "distill_test_f1": 0.8203}, {},
     "distillation raised dev F1 from 0.812 to 0.836 (test F1 0.801 → 0.820): the distilled student ships"),
    ({"gold_dev_f1": 0.835, "distill_dev_f1": 0.829, "kept_phase": "gold"}, WEAK_CONVERGED,
     "distillation lowered dev F1 from 0.835 to 0.829, so the gold-only student ships: teacher 1 (dev F1 0.771) is "
     "weaker than the student on this data; try a stronger teacher (--checkpoint), unlabeled in-domain text "
     "(--unlabeled)"),
    ({"gold_dev_f1": 0.835, "distill_dev_f1": 0.829, "kept_phase": "gold"},
     {"dev_f1": 0.771, "epochs": 3.0, "best_epoch": 3.0},
     "distillation lowered dev F1 from 0.835 to 0.829, so the gold-only student ships: teacher 1 (dev F1 0.771) is "
     "weaker than the student on this data; try a stronger teacher (--checkpoint), unlabeled in-domain text "
     "(--unlabeled), or more teacher epochs (--max-epochs: its best dev F1 came at its last epoch, 3)"),
    ({"gold_dev_f1": 0.7, "distill_dev_f1": 0.69, "kept_phase": "gold", "gold_test_f1": 0.71, "distill_test_f1": 0.72},
     {"dev_f1": 0.9, "epochs": 5.0, "best_epoch": 3.0},
     "distillation lowered dev F1 from 0.700 to 0.690 (test F1 0.710 → 0.720), so the gold-only student ships, "
     "although teacher 1 (dev F1 0.900) is stronger than the student: its labels did not carry over; try unlabeled "
     "in-domain text (--unlabeled), another --temperature / --alpha, or more student epochs (--student-max-epochs)"),
    ({"gold_dev_f1": 0.6, "distill_dev_f1": 0.6, "kept_phase": "gold"}, {},
     "distillation left dev F1 at 0.600, so the gold-only student ships; try unlabeled in-domain text (--unlabeled) "
     "or another --temperature / --alpha"),
    ({"gold_dev_f1": 0.8351, "distill_dev_f1": 0.8349, "kept_phase": "gold"}, {"dev_f1": 0.5},
     "distillation lowered dev F1 from 0.8351 to 0.8349, so the gold-only student ships: teacher 1 (dev F1 0.500) "
     "is weaker than the student on this data; try a stronger teacher (--checkpoint), unlabeled in-domain text "
     "(--unlabeled)"),
    ({"gold_dev_f1": 0.7, "kept_phase": "gold", "gold_test_f1": 0.7},  {"dev_f1": 0.9},
     "no distillation phase ran (no teacher labels to learn from): the gold-only student ships (dev F1 0.700)"),
    ({}, WEAK_CONVERGED, ""),
])
def test_verdict(student, teacher1, expected):
    assert distillation_verdict(student, teacher1) == expected


def test_verdict_follows_the_kept_phase_not_the_test_set():
    "Dev decides: a distilled student that is worse on test still ships, and the verdict shows the test change."
    verdict = distillation_verdict({"gold_dev_f1": 0.5, "distill_dev_f1": 0.6, "kept_phase": "distill",
                                    "gold_test_f1": 0.55, "distill_test_f1": 0.52}, None)
    assert verdict == "distillation raised dev F1 from 0.500 to 0.600 (test F1 0.550 → 0.520): the distilled student ships"
    # an older run's metrics without `kept_phase`: the higher dev F1 was kept
    assert distillation_verdict({"gold_dev_f1": 0.5, "distill_dev_f1": 0.6}).startswith("distillation raised")
