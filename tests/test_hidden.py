"""Distillation of teacher 1's hidden states (issue #21, item 3b): the run setting and its CLI option, the per-word
store, the training-only projection (it learns, and the saved student does not change shape), and a run that changes
only the student."""
import dataclasses
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cascade_distill.cli import build_parser, config_from_args
from cascade_distill.encode import load_tokenizer, predict_logits
from cascade_distill.features import StudentConfig
from cascade_distill.hidden import teacher_hidden_states
from cascade_distill.pipeline import HIDDEN_STORE, STAGES, Cascade, CascadeConfig, student_inputs
from cascade_distill.store import LogitStore
from cascade_distill.student import (DistillationTrainer, HiddenDistiller, StudentCollator, StudentDataset, hidden_loss,
                                     new_student, student_metrics)
from cascade_distill.training import TrainConfig, fit, training_arguments
from transformers import AutoModelForTokenClassification

QUICK = TrainConfig(max_epochs=2, patience=1, learning_rate=5e-3, max_length=64, progress=False, seed=1)


def tiny_config(checkpoint, **changes):
    return CascadeConfig(checkpoint=checkpoint, teacher1=QUICK, teacher2=QUICK,
                         student_training=dataclasses.replace(QUICK, learning_rate=3e-3, max_epochs=3), seed=1, **changes)


def test_setting_is_checked_and_has_a_cli_option():
    assert CascadeConfig().student_hidden_weight == 0.0
    with pytest.raises(ValueError, match="student_hidden_weight must be at least 0"):
        CascadeConfig(student_hidden_weight=-0.5)
    args = build_parser().parse_args(["run", "--train", "t.txt", "--dev", "d.txt", "--student-hidden-weight", "0.5"])
    assert config_from_args(args, CascadeConfig()).student_hidden_weight == 0.5
    values = CascadeConfig(student_hidden_weight=2.0).to_dict()
    assert CascadeConfig.from_dict(values).student_hidden_weight == 2.0
    del values["student_hidden_weight"]  # a run directory written before the setting
    assert CascadeConfig.from_dict(values).student_hidden_weight == 0.0


@pytest.fixture(scope="module")
def teacher(tiny_checkpoint, labels):
    model = AutoModelForTokenClassification.from_pretrained(str(tiny_checkpoint), num_labels=len(labels)).eval()
    return model, load_tokenizer(tiny_checkpoint)


def teacher_targets(teacher, samples):
    "The teacher's word logits and last-hidden-layer vectors of `samples` (windows of 64 subwords, stride 16)."
    model, tokenizer = teacher
    tokens = [s.tokens for s in samples]
    return (predict_logits(model, tokenizer, tokens, 32, 64, 16),
            teacher_hidden_states(model, tokenizer, tokens, 32, 64, 16))


def test_hidden_term_learns_and_its_projection_gets_gradients(tmp_path, teacher, tweets, labels):
    "A few epochs with the hidden term lower it on the training samples; the projection's weights receive gradients."
    train = tweets["train"][:48]
    soft, states = teacher_targets(teacher, train)
    states = [s.astype(np.float16) for s in states]
    torch.manual_seed(0)
    student, featurizer = new_student(train, labels, StudentConfig(labels, word_dim=16, width=16, depth=1))
    dataset = StudentDataset(featurizer, train, labels, soft, hidden_states=states)
    distiller = HiddenDistiller(student, dataset.hidden_width)
    batch = StudentCollator()([dataset[i] for i in range(len(dataset))])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}

    def term() -> float:
        distiller.eval()
        with torch.no_grad():
            projected = distiller(**inputs, return_hidden=True).hidden_states[0]
        return hidden_loss(projected, batch["hidden_targets"], batch["hidden_mask"]).item()

    distiller.train()
    hidden_loss(distiller(**inputs, return_hidden=True).hidden_states[0], batch["hidden_targets"],
                batch["hidden_mask"]).backward()
    assert distiller.projection.weight.grad is not None and distiller.projection.weight.grad.abs().sum() > 0
    assert student.classifier.weight.grad is None  # the hidden term reaches the layers below the tag layer only
    distiller.zero_grad()
    before = term()
    fit(distiller, dataset, StudentDataset(featurizer, tweets["dev"], labels), student_metrics(tweets["dev"], labels),
        StudentCollator(), tmp_path / "fit", dataclasses.replace(QUICK, max_epochs=6, patience=6, learning_rate=1e-2),
        trainer_cls=DistillationTrainer, hidden_weight=5.0)
    after = term()
    assert after < before - 0.05, (before, after)


def test_no_hidden_term_without_weight(tmp_path, teacher, tweets, labels):
    "hidden_weight 0 (the default): the batch's hidden targets are ignored, the loss is the KD loss alone."
    train = tweets["train"][:8]
    soft, states = teacher_targets(teacher, train)
    student, featurizer = new_student(train, labels, StudentConfig(labels, word_dim=16, width=16, depth=1))
    batch = StudentCollator()(list(StudentDataset(featurizer, train, labels, soft, hidden_states=states)))
    distiller = HiddenDistiller(student, states[0].shape[1]).eval()
    losses = {}
    no_eval = training_arguments(tmp_path, QUICK, eval_strategy="no", save_strategy="no", load_best_model_at_end=False)
    for weight in (0.0, 1.0):
        trainer = DistillationTrainer(model=distiller, args=no_eval, hidden_weight=weight)
        losses[weight] = trainer.compute_loss(distiller, dict(batch)).item()
    with pytest.raises(ValueError, match="hidden_weight must be at least 0"):
        DistillationTrainer(model=distiller, args=no_eval, hidden_weight=-1.0)
    projected = distiller(batch["input_ids"], batch["attention_mask"], return_hidden=True).hidden_states[0]
    term = hidden_loss(projected, batch["hidden_targets"], batch["hidden_mask"]).item()
    assert term > 0.1
    assert losses[1.0] == pytest.approx(losses[0.0] + term, rel=1e-4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_checkpoint, tweets):
    "A tiny run with a transfer set, without the option and (forked from it) with it."
    folder = tmp_path_factory.mktemp("runs")
    unlabeled = [dataclasses.replace(s, id=f"u{i}") for i, s in enumerate(tweets["test"][:30])]
    off = Cascade(folder / "off", tiny_config(tiny_checkpoint), **tweets, unlabeled=unlabeled)
    off.run()
    shutil.copytree(off.run_dir.path, folder / "on")
    on = Cascade(folder / "on", dataclasses.replace(off.config, student_hidden_weight=1.0))
    before = on.run_dir.manifest
    on.run()
    return off, on, before


def test_off_keeps_the_student_inputs_of_earlier_versions(runs):
    off, _, _ = runs
    assert not (off.run_dir / HIDDEN_STORE).exists()  # nothing computed
    fp, config = off.fingerprints(), off.config
    assert student_inputs(off, fp) == [fp["split"], fp["teacher2"], off.overrides(), config.student_training.to_dict(),
                                       config.temperature, config.alpha, config.init_student_embeddings, config.seed,
                                       fp["transfer_relabel"], config.transfer_epochs]


def test_on_retrains_only_the_student(runs):
    _, on, before = runs
    after = on.run_dir.manifest
    assert all(after[stage] == before[stage] for stage in [*STAGES[:-1], "transfer", "transfer_relabel"])
    assert after["student"]["fingerprint"] != before["student"]["fingerprint"]
    assert any(f.startswith(f"{HIDDEN_STORE}/") for f in after["student"]["files"])  # recorded with the student


def test_store_holds_one_row_per_word_of_every_training_and_unlabeled_sample(runs):
    _, on, _ = runs
    store = LogitStore(on.run_dir / HIDDEN_STORE)
    samples = on.train + list(on.unlabeled)
    assert store.ids == [s.id for s in samples]
    assert store.logits.dtype == np.float16
    assert store.logits.shape == (sum(len(s.tokens) for s in samples), 32)  # the tiny BERT's width
    model, tokenizer = on.load_teacher1()
    expected = teacher_hidden_states(model, tokenizer, [samples[-1].tokens], 32, QUICK.max_length, QUICK.stride)[0]
    assert np.allclose(store[samples[-1].id].astype(np.float32), expected, atol=2e-2)


def test_saved_student_has_the_same_weights_with_and_without_the_option(runs):
    off, on, _ = runs
    weights = {name: load_file(str(c.run_dir / "student" / "model" / "model.safetensors")) for name, c in
               (("off", off), ("on", on))}
    assert {k: v.shape for k, v in weights["on"].items()} == {k: v.shape for k, v in weights["off"].items()}
    assert not any("projection" in k for k in weights["on"])
    report = on.report()["student"]
    assert report["distill_dev_f1"] is not None


def test_benchmark_students_are_fingerprinted_with_the_option_only_when_on(runs):
    from cascade_distill import benchmark
    off, on, _ = runs
    samples, soft = off.distillation_targets()
    plain = benchmark.student_inputs(off, samples, soft)
    assert len(plain) == 14  # as the benchmark's cached students were fingerprinted before the option
    with_hidden = benchmark.student_inputs(on, samples, soft)
    assert with_hidden[:14] == plain and with_hidden[14] == {"student_hidden_weight": 1.0}
