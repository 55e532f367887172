"""Fast checks of the word-level TextCNN student: features, architecture, decoding, distillation loss and data,
training phases and the kept phase, save/load without the teacher, predict."""
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
from cascade_distill.encode import make_tiny_checkpoint, softmax
from cascade_distill.store import stored_fingerprint
from cascade_distill.student import (DistillConfig, Student, StudentCollator, StudentConfig, StudentDataset,
                                     TextCNNTagger, WordFeaturizer, build_vocab, distillation_loss, new_student,
                                     teacher_word_vectors, train_student, viterbi_tags, word_shape)
from cascade_distill.scoring import corpus_f1
from cascade_distill.training import TrainConfig, best_epoch

FAST = TrainConfig(max_epochs=2, patience=1, batch_size=16, eval_batch_size=64, learning_rate=3e-3, progress=False)


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
def small(labels):
    return StudentConfig(labels, word_dim=16, width=24, depth=2, kernel_sizes=(3, 5))


def test_config_json_round_trip(small):
    assert StudentConfig.from_json(small.to_json()) == small
    with pytest.raises(ValueError, match="subword student of early versions"):  # a config of the previous, subword student
        StudentConfig.from_json(json.dumps({"vocab_size": 10, "labels": ["O"], "emb_dim": 8, "channels": 4}))


def test_shape_and_features_see_case():
    assert word_shape("McDonald's") == "XxXxxxx'x"
    assert word_shape("2024-11-30") == "dddd-dd-dd"
    featurizer = WordFeaturizer(StudentConfig(["O"], word_dim=0))
    upper, lower = featurizer.lookup(["Apple", "apple"])
    assert (upper != lower).any() and (upper[:4] == lower[:4]).all()  # same lower-cased form, other shape


def test_featurizer_is_stable_and_cached(labels):
    config = StudentConfig(labels, vocab_size=3, word_dim=4)
    words = ["Paris", "is", "nice", "Paris", "東"]
    a, b = WordFeaturizer(config, ["paris", "is"]), WordFeaturizer(config, ["paris", "is"])
    np.testing.assert_array_equal(a.lookup(words), b.featurize(words))  # same ids in a fresh featurizer
    np.testing.assert_array_equal(a.lookup(words), a.lookup(words))  # and from the cache
    assert a.lookup(words)[:, -1].tolist() == [1, 2, 0, 1, 0]  # word-table rows, 0 = unknown
    with pytest.raises(ValueError, match="word rows"):
        WordFeaturizer(config, ["only-one"])


def test_shapes_and_padding_does_not_change_outputs(small, corpus):
    torch.manual_seed(0)
    vocab = build_vocab([s.tokens for s in corpus["train"]])
    config = dataclasses.replace(small, vocab_size=len(vocab) + 1)
    model, featurizer = TextCNNTagger(config).eval(), WordFeaturizer(config, vocab)
    sentences = [s.tokens for s in corpus["train"][:4]]
    ids, mask = featurizer.batch(sentences)
    out = model(ids, mask, labels=torch.zeros(mask.shape, dtype=torch.long))
    assert out.logits.shape == (*mask.shape, len(small.labels)) and out.loss.shape == ()
    for i, tokens in enumerate(sentences):
        torch.testing.assert_close(out.logits[i, : len(tokens)], model(*featurizer.batch([tokens])).logits[0])


def test_word_table_from_teacher(checkpoint, corpus, small):
    model, featurizer = new_student(corpus["train"], small.labels, small, init_from=checkpoint)
    vectors = teacher_word_vectors(checkpoint, featurizer.vocab, small.word_dim)
    assert model.student_config.vocab_size == len(featurizer.vocab) + 1
    torch.testing.assert_close(model.words.weight[1:], vectors)
    assert not model.words.weight[0].any()
    wide = dataclasses.replace(small, word_dim=48)  # wider than the tiny teacher (32): padded with zeros
    model, _ = new_student(corpus["train"], small.labels, wide, init_from=checkpoint)
    assert not model.words.weight[:, 32:].any() and model.words.weight[1:, :32].any()


def test_viterbi_never_opens_with_inside_tag():
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(50, 7, len(labels))) * 3, dtype=torch.float32)
    mask = torch.ones(50, 7, dtype=torch.long)
    mask[::2, 5:] = 0
    for tags, m in zip(viterbi_tags(logits, mask, labels), mask):
        assert len(tags) == int(m.sum())
        for previous, tag in zip(["O"] + tags, tags):
            assert not tag.startswith("I-") or previous[2:] == tag[2:]
    confident = torch.full((1, 3, len(labels)), -9.0)
    confident[0, [0, 1, 2], [1, 2, 0]] = 9.0  # B-PER I-PER O: valid, so kept as is
    assert viterbi_tags(confident, torch.ones(1, 3), labels) == [["B-PER", "I-PER", "O"]]


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


def test_student_dataset_and_collator(corpus, labels, small):
    samples = corpus["train"][:3]
    featurizer = WordFeaturizer(dataclasses.replace(small, word_dim=0))
    rng = np.random.default_rng(0)
    soft = [rng.normal(size=(len(s.tokens), len(labels))).astype(np.float32) for s in samples[:2]] + [None]
    dataset = StudentDataset(featurizer, samples, labels, soft)
    for i, sample in enumerate(samples):
        item = dataset[i]
        assert item["input_ids"].shape == (len(sample.tokens), featurizer.columns)
        assert [labels[t] for t in item["labels"]] == sample.tags
        if soft[i] is None:
            assert item["soft_mask"].sum() == 0
        else:
            np.testing.assert_array_equal(item["soft_labels"], soft[i])
            assert item["soft_mask"].sum() == len(sample.tokens)
    batch = StudentCollator()([dataset[0], dataset[2]])
    width = max(len(samples[0].tokens), len(samples[2].tokens))
    assert batch["input_ids"].shape == (2, width, featurizer.columns)
    assert batch["soft_labels"].shape == (2, width, len(labels)) and batch["soft_mask"].shape == (2, width)
    with pytest.raises(ValueError, match="expected"):
        StudentDataset(featurizer, samples, labels, [np.zeros((1, len(labels)))] * 3)


def _mean_kl(student, samples, teacher_logits):
    "Mean over words of KL(teacher || student) at temperature 1."
    kls = []
    for t, s in zip(teacher_logits, student.predict_logits([s.tokens for s in samples])):
        p, q = softmax(t.astype(np.float64)), softmax(s.astype(np.float64))
        kls.append((p * (np.log(p) - np.log(q))).sum(-1))
    return float(np.concatenate(kls).mean())


def _student_from(folder, like: Student) -> Student:
    "The student with the weights stored in a phase folder's `final/`."
    model = TextCNNTagger(like.config)
    model.load_state_dict(load_file(str(folder / "final" / "model.safetensors")))
    return Student(model, like.featurizer)


def test_train_student_gold_then_distill_keeps_the_best_phase(corpus, labels, small, tmp_path):
    train, dev = corpus["train"], corpus["dev"]
    label2id = {label: i for i, label in enumerate(labels)}
    rng = np.random.default_rng(1)
    # a teacher that mostly agrees with gold but has its own opinion on the other tags
    teacher = [4.0 * np.eye(len(labels), dtype=np.float32)[[label2id[t] for t in s.tags]]
               + 2.0 * rng.normal(size=(len(s.tokens), len(labels))).astype(np.float32) for s in train]
    teacher[0] = None  # trained on gold only
    config = dataclasses.replace(FAST, max_epochs=3)
    student, history = train_student(train, dev, labels, tmp_path / "student", teacher, config, small,
                                     temperature=1.0, alpha=0.2)
    assert set(history) == {"gold", "distill", "kept"}
    losses = [e["loss"] for e in history["gold"] if "loss" in e]
    assert losses[-1] < losses[0]
    best = {phase: best_epoch(history[phase])["eval_f1"] for phase in ("gold", "distill")}
    assert history["kept"] == ("distill" if best["distill"] > best["gold"] else "gold")
    # the returned student is the kept phase's best epoch: its dev F1 recomputed from scratch is the logged one
    dev_f1 = corpus_f1([s.tags for s in dev], student.predict_tags([s.tokens for s in dev]))
    assert dev_f1 == pytest.approx(best[history["kept"]])
    # the distillation phase restored its best epoch (not the last) and moved the student towards the teacher
    phase = tmp_path / "student" / "distill"
    last = Path(get_last_checkpoint(str(phase)))
    best_checkpoint = Path(json.loads((last / "trainer_state.json").read_text())["best_model_checkpoint"])
    final = load_file(str(phase / "final" / "model.safetensors"))
    assert all(torch.equal(v, final[k]) for k, v in load_file(str(best_checkpoint / "model.safetensors")).items())
    kept = range(1, len(train))  # the samples with teacher logits
    before = _mean_kl(_student_from(tmp_path / "student" / "gold", student), [train[i] for i in kept],
                      [teacher[i] for i in kept])
    after = _mean_kl(_student_from(phase, student), [train[i] for i in kept], [teacher[i] for i in kept])
    assert after < before
    # a second call on the same folder reuses the finished phases
    again, history_again = train_student(train, dev, labels, tmp_path / "student", teacher, config, small,
                                         temperature=1.0, alpha=0.2)
    assert history_again == json.loads(json.dumps(history))
    assert torch.equal(again.model.classifier.weight, student.model.classifier.weight)


def test_save_load_round_trip_without_teacher(corpus, labels, small, tmp_path):
    student, _ = train_student(corpus["train"][:40], corpus["dev"], labels, tmp_path / "work",
                               config=dataclasses.replace(FAST, max_epochs=1), student_config=small)
    folder = student.save_pretrained(tmp_path / "saved")
    assert {p.name for p in folder.iterdir()} == {"config.json", "vocab.json", "model.safetensors", "labels.json"}
    loaded = Student.from_pretrained(folder)
    tokens = [s.tokens for s in corpus["dev"]]
    assert loaded.predict_tags(tokens) == student.predict_tags(tokens)
    for a, b in zip(loaded.predict_logits(tokens), student.predict_logits(tokens)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    texts = [" ".join(t) for t in tokens[:10]]
    assert loaded.predict(texts) == student.predict(texts)
    with pytest.raises(FileNotFoundError, match="config.json"):
        Student.from_pretrained(tmp_path / "work")


def test_predict_spans_have_character_offsets(small, labels):
    config = dataclasses.replace(small, word_dim=0)
    model = TextCNNTagger(config)
    with torch.no_grad():  # always answers B-<first type>: every token is a one-token entity
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([5.0 if label == labels[1] else 0.0 for label in labels]))
    student = Student(model, WordFeaturizer(config))
    text = "Obama  flew to 東京, twice!"
    spans = student.predict([text, ""])
    expected = [(a, b, text[a:b]) for _, a, b in tokenize_text(text)]
    assert [(s["start"], s["end"], s["text"]) for s in spans[0]] == expected
    assert spans[1] == []
    entity = labels[1].partition("-")[2]
    token_spans = student.predict([["Obama", "flew"]])[0]
    assert [{k: v for k, v in s.items() if k != "score"} for s in token_spans] == [
        {"start": 0, "end": 1, "label": entity, "tokens": ["Obama"]}, {"start": 1, "end": 2, "label": entity, "tokens": ["flew"]}]
    assert all(0.5 < s["score"] <= 1.0 for s in token_spans)  # spans carry the confidence of their tags
    assert student.predict_tags([["a", "b"]]) == [[labels[1], labels[1]]]
    with pytest.raises(TypeError):
        student.predict("a single string")


def test_soft_labels_reach_the_loss(corpus, labels, small, tmp_path):
    "Same gold phase and seed, different teacher logits: the distilled phases differ (the Trainer keeps soft labels)."
    train, dev = corpus["train"][:40], corpus["dev"]
    config = dataclasses.replace(FAST, max_epochs=1)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        teacher = [5.0 * rng.normal(size=(len(s.tokens), len(labels))).astype(np.float32) for s in train]
        if name == "b":  # the second student resumes from the first one's finished gold phase
            (tmp_path / name / "gold").mkdir(parents=True)
            (tmp_path / "a" / "gold" / "final").rename(tmp_path / name / "gold" / "final")
        train_student(train, dev, labels, tmp_path / name, teacher, config, small, temperature=1.0, alpha=0.0)
    a, b = (load_file(str(tmp_path / name / "distill" / "final" / "model.safetensors")) for name in ("a", "b"))
    assert not torch.equal(a["classifier.weight"], b["classifier.weight"])


def test_logged_dev_loss_is_that_of_the_saved_weights(corpus, labels, small, tmp_path):
    "Evaluation during training sees the current weights (the fast prediction path's projected tables are fresh)."
    from torch.utils.data import DataLoader
    config = dataclasses.replace(FAST, max_epochs=3, patience=3)
    student, history = train_student(corpus["train"], corpus["dev"], labels, tmp_path, config=config,
                                     student_config=small)
    logged = {round(e["epoch"]): e["eval_loss"] for e in history["gold"] if "eval_loss" in e}
    dev = DataLoader(StudentDataset(student.featurizer, corpus["dev"], labels), batch_size=config.eval_batch_size,
                     collate_fn=StudentCollator())
    checkpoints = sorted((tmp_path / "gold").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) == 3
    for epoch, checkpoint in enumerate(checkpoints, start=1):
        model = TextCNNTagger(student.config)
        model.load_state_dict(load_file(str(checkpoint / "model.safetensors")))
        model.eval()
        with torch.no_grad():
            total = sum(model(**batch).loss.item() * len(batch["labels"]) for batch in dev)
        assert total / len(corpus["dev"]) == pytest.approx(logged[epoch], rel=1e-4), epoch


def test_distillation_settings_default_to_the_runs_and_are_checked_before_training(corpus, labels, small, tmp_path):
    assert (DistillConfig().temperature, DistillConfig().alpha) == (4.0, 0.9)
    teacher = [np.zeros((len(s.tokens), len(labels)), np.float32) for s in corpus["train"][:10]]
    for bad, message in (({"alpha": 1.5}, "alpha"), ({"temperature": 0.0}, "temperature"),
                         ({"distill": DistillConfig(alpha=0.5), "alpha": -1.0}, "alpha")):
        with pytest.raises(ValueError, match=message):
            train_student(corpus["train"][:10], corpus["dev"], labels, tmp_path / "bad", teacher, FAST, small, **bad)
    assert not (tmp_path / "bad").exists()  # refused before anything trained


def test_changed_distillation_setting_retrains_the_distillation_phase_only(corpus, labels, small, tmp_path):
    "The phases are cached by the fingerprint of their inputs: another α reuses the gold phase, retrains distillation."
    train, dev = corpus["train"][:60], corpus["dev"]
    config = dataclasses.replace(FAST, max_epochs=1)
    rng = np.random.default_rng(3)
    teacher = [3.0 * rng.normal(size=(len(s.tokens), len(labels))).astype(np.float32) for s in train]
    folder = tmp_path / "student"
    _, first = train_student(train, dev, labels, folder, teacher, config, small, DistillConfig(1.0, 0.5))
    gold_fp, distill_fp = (stored_fingerprint(folder / phase / "final") for phase in ("gold", "distill"))
    gold_weights = (folder / "gold" / "final" / "model.safetensors").read_bytes()
    _, same = train_student(train, dev, labels, folder, teacher, config, small, temperature=1.0, alpha=0.5)
    assert same == json.loads(json.dumps(first))  # same inputs, given as keywords: both phases reused
    _, other = train_student(train, dev, labels, folder, teacher, config, small, temperature=1.0, alpha=0.0)
    assert stored_fingerprint(folder / "gold" / "final") == gold_fp  # gold phase: the same inputs, reused
    assert (folder / "gold" / "final" / "model.safetensors").read_bytes() == gold_weights
    assert stored_fingerprint(folder / "distill" / "final") != distill_fp  # trained again for the new α
    assert other["gold"] == json.loads(json.dumps(first["gold"]))
    assert other["distill"] != json.loads(json.dumps(first["distill"]))
    # other teacher logits change the distillation phase's inputs too; a student of other settings retrains both
    other_fp = stored_fingerprint(folder / "distill" / "final")
    train_student(train, dev, labels, folder, [2.0 * t for t in teacher], config, small, temperature=1.0, alpha=0.0)
    assert stored_fingerprint(folder / "gold" / "final") == gold_fp
    assert stored_fingerprint(folder / "distill" / "final") not in (distill_fp, other_fp)
    train_student(train, dev, labels, folder, teacher, config, dataclasses.replace(small, width=48), temperature=1.0,
                  alpha=0.0)
    assert stored_fingerprint(folder / "gold" / "final") != gold_fp  # another network: the gold phase retrains
