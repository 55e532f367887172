"""Fast checks of the TextCNN student: architecture, distillation loss and data, training phases, save/load, predict."""
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers.trainer_utils import get_last_checkpoint

from cascade_distill.data import demo_corpus, label_list, tokenize_text
from cascade_distill.encode import load_tokenizer, make_tiny_checkpoint, predict_logits, softmax
from cascade_distill.student import (DistillCollator, DistillDataset, Student, StudentConfig, TextCNNTagger,
                                     distillation_loss, init_embeddings_from, train_student)
from cascade_distill.training import TrainConfig, best_epoch, evaluate_f1

FAST = TrainConfig(max_epochs=2, patience=1, batch_size=16, eval_batch_size=64, learning_rate=3e-3, max_length=64,
                   stride=16, progress=False)


@pytest.fixture(scope="module")
def corpus():
    return demo_corpus(limit=150)


@pytest.fixture(scope="module")
def labels(corpus):
    return label_list(corpus["train"] + corpus["dev"])


@pytest.fixture(scope="module")
def checkpoint(corpus, tmp_path_factory):
    return make_tiny_checkpoint([s.tokens for s in corpus["train"]], tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def tokenizer(checkpoint):
    return load_tokenizer(checkpoint)


@pytest.fixture(scope="module")
def small(tokenizer, labels):
    return StudentConfig.for_tokenizer(tokenizer, labels, emb_dim=32, channels=32)


def test_config_json_round_trip(small):
    assert StudentConfig.from_json(small.to_json()) == small


def test_shapes_and_padding_does_not_change_outputs():
    torch.manual_seed(0)
    model = TextCNNTagger(StudentConfig(vocab_size=40, labels=["O", "B-X", "I-X"], emb_dim=8, channels=4)).eval()
    ids = torch.randint(1, 40, (2, 9))
    out = model(ids, torch.ones_like(ids), labels=torch.zeros_like(ids))
    assert out.logits.shape == (2, 9, 3) and out.loss.shape == ()
    short = ids[0, :5]
    padded = torch.stack([torch.cat([short, torch.zeros(4, dtype=torch.long)]), ids[1]])
    mask = torch.tensor([[1] * 5 + [0] * 4, [1] * 9])
    torch.testing.assert_close(model(padded, mask).logits[0, :5], model(short[None]).logits[0])


def test_embeddings_from_checkpoint_set_width(checkpoint, small):
    embeddings = init_embeddings_from(checkpoint)
    model = TextCNNTagger(small, embeddings)
    assert model.student_config.emb_dim == embeddings.shape[1] == 32
    assert torch.equal(model.embed.weight[: len(embeddings)], embeddings)


def test_distillation_loss_matches_hand_computation():
    student = torch.tensor([[[0.0, 1.0], [2.0, 0.0]]])
    teacher = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    T, alpha = 2.0, 0.3
    p = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]
    q = p[::-1]
    kl = sum(pc * math.log(pc / qc) for pc, qc in zip(p, q))
    ce = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-2))) / 2
    loss = distillation_loss(student, teacher, torch.tensor([[1, 0]]), torch.tensor([[1, 0]]), T, alpha)
    assert loss.item() == pytest.approx((1 - alpha) * T**2 * kl + alpha * ce, abs=1e-6)
    assert distillation_loss(teacher, teacher, torch.ones(1, 2), None, T, 0.0).item() == pytest.approx(0, abs=1e-7)


def test_distill_dataset_and_collator(corpus, labels, tokenizer):
    samples = corpus["train"][:3]
    rng = np.random.default_rng(0)
    soft = [rng.normal(size=(len(s.tokens), len(labels))).astype(np.float32) for s in samples[:2]] + [None]
    dataset = DistillDataset(tokenizer, samples, soft, labels, max_length=16, stride=4)
    assert len(dataset) > 3  # short windows: long samples are cut
    for i, window in enumerate(dataset.windows):
        item = dataset[i]
        logits = soft[window.sample_index]
        if logits is None:
            assert item["soft_mask"].sum() == 0
        else:
            np.testing.assert_array_equal(item["soft_labels"][window.first_subword],
                                          logits[window.word_start : window.word_end])
            assert item["soft_mask"].sum() == len(window.first_subword)
    batch = DistillCollator(tokenizer.pad_token_id)([dataset[0], dataset[len(dataset) - 1]])
    assert batch["soft_labels"].shape == (*batch["input_ids"].shape, len(labels))
    assert batch["soft_mask"].shape == batch["labels"].shape == batch["input_ids"].shape
    with pytest.raises(ValueError, match="expected"):
        DistillDataset(tokenizer, samples, [np.zeros((1, len(labels)))] * 3, labels)


def _mean_kl(model, tokenizer, samples, teacher_logits):
    "Mean over words of KL(teacher || student) at temperature 1."
    student_logits = predict_logits(model, tokenizer, [s.tokens for s in samples], 64, FAST.max_length, FAST.stride)
    kls = []
    for t, s in zip(teacher_logits, student_logits):
        p, q = softmax(t.astype(np.float64)), softmax(s.astype(np.float64))
        kls.append((p * (np.log(p) - np.log(q))).sum(-1))
    return float(np.concatenate(kls).mean())


def _same_weights(model, checkpoint_folder) -> bool:
    saved = load_file(str(checkpoint_folder / "model.safetensors"))
    return all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())


def test_train_student_gold_then_distill(corpus, labels, tokenizer, small, tmp_path):
    train, dev = corpus["train"], corpus["dev"]
    label2id = {label: i for i, label in enumerate(labels)}
    rng = np.random.default_rng(1)
    # a teacher that mostly agrees with gold but has its own opinion on the other tags
    teacher = [4.0 * np.eye(len(labels), dtype=np.float32)[[label2id[t] for t in s.tags]]
               + 2.0 * rng.normal(size=(len(s.tokens), len(labels))).astype(np.float32) for s in train]
    teacher[0] = None  # trained on gold only
    config = dataclasses.replace(FAST, max_epochs=3)
    model, history = train_student(train, dev, labels, tokenizer, tmp_path / "student", teacher, config, small,
                                   temperature=1.0, alpha=0.2)
    assert set(history) == {"gold", "distill"}
    losses = [e["loss"] for e in history["gold"] if "loss" in e]
    assert losses[-1] < losses[0]
    # the returned model holds the best distillation epoch's weights (restored by the Trainer), not the last epoch's
    best_f1 = best_epoch(history["distill"])["eval_f1"]
    assert evaluate_f1(model, tokenizer, dev, labels, config) == pytest.approx(best_f1)
    last = Path(get_last_checkpoint(str(tmp_path / "student" / "distill")))
    best = Path(json.loads((last / "trainer_state.json").read_text())["best_model_checkpoint"])
    assert _same_weights(model, best) and (best == last or not _same_weights(model, last))
    gold_model = TextCNNTagger(model.student_config)
    gold_model.load_state_dict(load_file(str(tmp_path / "student" / "gold" / "final" / "model.safetensors")))
    kept = range(1, len(train))  # the samples with teacher logits
    before = _mean_kl(gold_model, tokenizer, [train[i] for i in kept], [teacher[i] for i in kept])
    after = _mean_kl(model, tokenizer, [train[i] for i in kept], [teacher[i] for i in kept])
    assert after < before
    # a second call on the same folder reuses the finished phases
    again, history_again = train_student(train, dev, labels, tokenizer, tmp_path / "student", teacher, config, small,
                                         temperature=1.0, alpha=0.2)
    assert len(history_again["distill"]) == len(history["distill"])
    assert torch.equal(again.classifier.weight, model.classifier.weight)


def test_save_load_round_trip(corpus, tokenizer, small, tmp_path):
    torch.manual_seed(0)
    student = Student(TextCNNTagger(small), tokenizer)
    folder = student.save_pretrained(tmp_path / "saved")
    assert {"config.json", "model.safetensors", "labels.json"} <= {p.name for p in folder.iterdir()}
    loaded = Student.from_pretrained(folder)
    tokens = [s.tokens for s in corpus["dev"]]
    assert loaded.predict_tags(tokens) == student.predict_tags(tokens)
    for a, b in zip(loaded.predict_logits(tokens), student.predict_logits(tokens)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    texts = [" ".join(t) for t in tokens[:10]]
    assert loaded.predict(texts) == student.predict(texts)


def test_predict_spans_have_character_offsets(tokenizer, small, labels):
    model = TextCNNTagger(small)
    with torch.no_grad():  # always answers B-<first type>: every token is a one-token entity
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([5.0 if label == labels[1] else 0.0 for label in labels]))
    student = Student(model, tokenizer)
    text = "Obama  flew to 東京, twice!"
    spans = student.predict([text, ""])
    expected = [(a, b, text[a:b]) for _, a, b in tokenize_text(text)]
    assert [(s["start"], s["end"], s["text"]) for s in spans[0]] == expected
    assert spans[1] == []
    entity = labels[1].partition("-")[2]
    assert student.predict([["Obama", "flew"]]) == [[{"start": 0, "end": 1, "label": entity, "tokens": ["Obama"]},
                                                      {"start": 1, "end": 2, "label": entity, "tokens": ["flew"]}]]
    assert student.predict_tags([["a", "b"]]) == [[labels[1], labels[1]]]
    with pytest.raises(TypeError):
        student.predict("a single string")


def test_soft_labels_reach_the_loss(corpus, labels, tokenizer, small, tmp_path):
    "Same gold phase and seed, different teacher logits: the distilled students differ (the Trainer keeps soft labels)."
    train, dev = corpus["train"][:40], corpus["dev"]
    config = dataclasses.replace(FAST, max_epochs=1)
    rng = np.random.default_rng(0)
    students = []
    for name in ("a", "b"):
        teacher = [5.0 * rng.normal(size=(len(s.tokens), len(labels))).astype(np.float32) for s in train]
        if students:  # the second student resumes from the first one's finished gold phase
            (tmp_path / name / "gold").mkdir(parents=True)
            (tmp_path / "a" / "gold" / "final").rename(tmp_path / name / "gold" / "final")
        model, _ = train_student(train, dev, labels, tokenizer, tmp_path / name, teacher, config, small,
                                 temperature=1.0, alpha=0.0)
        students.append(model)
    assert not torch.equal(students[0].classifier.weight, students[1].classifier.weight)
