"Tests of teacher 2 (dense-head tagger, its training, relabelling and the review table) with a tiny random BERT."
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from cascade_distill.data import Sample
from cascade_distill.encode import load_tokenizer, make_tiny_checkpoint, predict_logits
from cascade_distill.training import TrainConfig, best_epoch, evaluate_f1, fit, window_datasets
from cascade_distill.teacher2 import (OUTCOMES, DenseHeadConfig, DenseHeadTagger, review_table, teacher2_logits,
                                      train_teacher2)

LABELS = ["O", "B-geo-loc", "I-geo-loc", "B-person", "I-person"]
FAST = TrainConfig(max_epochs=3, patience=1, batch_size=16, learning_rate=5e-3, max_length=64, progress=False)


def frames_corpus(n, seed):
    "Easy sentences ('alice flew to paris today') that a tiny model learns within an epoch or two."
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        city, person = rng.choice(["paris", "london", "berlin", "tokyo"]), rng.choice(["alice", "bob", "carol", "dave"])
        tokens = [person, "flew", "to", city, "today"] if i % 2 else ["we", "met", person, "in", city]
        tags = ["B-person" if t == person else "B-geo-loc" if t == city else "O" for t in tokens]
        samples.append(Sample(f"f{seed}-{i}", tokens, tags, "frames"))
    return samples


@pytest.fixture(scope="module")
def corpus():
    return frames_corpus(96, 0), frames_corpus(24, 1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, corpus):
    train, _ = corpus
    return make_tiny_checkpoint([s.tokens for s in train], tmp_path_factory.mktemp("tiny") / "bert")


@pytest.fixture(scope="module")
def tokenizer(checkpoint):
    return load_tokenizer(checkpoint)


@pytest.fixture
def head(checkpoint):
    torch.manual_seed(0)
    return DenseHeadTagger(DenseHeadConfig(checkpoint, LABELS)).eval()


def _batch(tokenizer):
    return tokenizer([["alice", "flew", "to", "paris"], ["we"]], is_split_into_words=True, padding=True,
                     return_tensors="pt")


def test_config_validates_and_counts_labels(checkpoint):
    config = DenseHeadConfig(Path(checkpoint), tuple(LABELS), 0.2)
    assert config.n_labels == 5 and config.labels == LABELS and isinstance(config.checkpoint, str)
    with pytest.raises(ValueError):
        DenseHeadConfig(checkpoint, [])


def test_head_structure(head):
    hidden = head.encoder.config.hidden_size
    assert isinstance(head.dense, nn.Linear) and (head.dense.in_features, head.dense.out_features) == (hidden, hidden)
    assert isinstance(head.norm, nn.LayerNorm) and head.norm.normalized_shape == (hidden,)
    assert isinstance(head.classifier, nn.Linear)
    assert (head.classifier.in_features, head.classifier.out_features) == (hidden, len(LABELS))
    assert isinstance(head.dropout, nn.Dropout) and head.dropout.p == pytest.approx(0.1)


def test_forward_shapes_and_loss(head, tokenizer):
    batch = _batch(tokenizer)
    gold = torch.full(batch["input_ids"].shape, -100)
    gold[0, 1:5] = torch.tensor([3, 0, 0, 1])
    out = head(**batch, labels=gold)
    assert out.logits.shape == (*batch["input_ids"].shape, len(LABELS))
    assert out.loss.item() == pytest.approx(F.cross_entropy(out.logits[0, 1:5], gold[0, 1:5]).item(), rel=1e-5)
    assert head(**batch).loss is None
    assert head(batch["input_ids"]).logits.shape == out.logits.shape  # attention mask is optional


@torch.no_grad()
def test_head_is_residual_dense_layernorm(head, tokenizer):
    batch = _batch(tokenizer)
    h = head.encoder(**{k: batch[k] for k in ("input_ids", "attention_mask")}).last_hidden_state
    logits = head(**batch).logits
    expected = head.classifier(F.layer_norm(h + torch.relu(head.dense(h)), h.shape[-1:], head.norm.weight,
                                            head.norm.bias, head.norm.eps))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    # not a plain linear layer on the encoder output (teacher 1's architecture) ...
    assert not torch.allclose(logits, head.classifier(h), atol=1e-3)
    # ... nor the dense block without the residual connection
    assert not torch.allclose(logits, head.classifier(head.norm(torch.relu(head.dense(h)))), atol=1e-3)
    # with the dense layer zeroed, only the residual path is left: classifier(LayerNorm(h))
    head.dense.weight.zero_(), head.dense.bias.zero_()
    torch.testing.assert_close(head(**batch).logits, head.classifier(head.norm(h)), atol=1e-5, rtol=1e-5)


def test_dropout_active_only_in_training(head, tokenizer):
    batch = _batch(tokenizer)
    head.head_config.dropout = 0.5
    head.dropout.p = 0.5
    torch.testing.assert_close(head(**batch).logits, head(**batch).logits)
    head.train()
    torch.manual_seed(1)
    assert not torch.allclose(head(**batch).logits, head(**batch).logits)


def test_save_load_round_trip(head, tokenizer, corpus, tmp_path):
    folder = head.save_pretrained(tmp_path / "t2", tokenizer)
    assert {"dense_head.json", "head.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert (folder / "encoder" / "config.json").is_file()
    loaded = DenseHeadTagger.from_pretrained(folder)
    assert not loaded.training
    assert loaded.head_config == head.head_config
    tokens = [s.tokens for s in corpus[1]]
    before = predict_logits(head, tokenizer, tokens, max_length=64)
    after = predict_logits(loaded, load_tokenizer(folder), tokens, max_length=64)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_saved_config_has_a_format_version_and_a_newer_one_is_refused(head, tokenizer, tmp_path):
    folder = head.save_pretrained(tmp_path / "t2", tokenizer)
    saved = json.loads((folder / "dense_head.json").read_text())
    assert saved["format_version"] == 1 and saved["labels"] == LABELS
    del saved["format_version"]  # as written before versions: the same fields, still read
    (folder / "dense_head.json").write_text(json.dumps(saved))
    assert DenseHeadTagger.from_pretrained(folder).head_config == head.head_config
    (folder / "dense_head.json").write_text(json.dumps({**saved, "format_version": 2}))
    with pytest.raises(ValueError, match="dense_head.json: format version 2"):
        DenseHeadTagger.from_pretrained(folder)


def test_from_pretrained_rejects_a_plain_checkpoint(checkpoint):
    with pytest.raises(FileNotFoundError, match="dense_head.json"):
        DenseHeadTagger.from_pretrained(checkpoint)


def test_train_teacher2_learns_and_keeps_best_epoch(checkpoint, tokenizer, corpus, tmp_path):
    train, dev = corpus
    torch.manual_seed(FAST.seed)
    untrained = evaluate_f1(DenseHeadTagger(DenseHeadConfig(checkpoint, LABELS)), tokenizer, dev, LABELS, FAST)
    model, tok, log = train_teacher2(train, dev, LABELS, checkpoint, tmp_path / "t2", FAST)
    evals = [e for e in log if "eval_f1" in e]
    assert len(evals) >= 2
    trained = evaluate_f1(model, tok, dev, LABELS, FAST)
    assert trained > untrained + 0.3
    assert trained == pytest.approx(best_epoch(log)["eval_f1"], abs=1e-6)
    best_state = load_file(str(tmp_path / "t2" / f"checkpoint-{best_epoch(log)['step']}" / "model.safetensors"))
    assert all(torch.equal(best_state[k], v.cpu()) for k, v in model.state_dict().items())


def test_fit_resumes_a_dense_head_run(checkpoint, tokenizer, corpus, tmp_path):
    train, dev = corpus
    one_epoch = TrainConfig(**{**FAST.to_dict(), "max_epochs": 1})
    first = fit(DenseHeadTagger(DenseHeadConfig(checkpoint, LABELS)),
                **window_datasets(tokenizer, train, dev, LABELS, one_epoch), output_dir=tmp_path / "run",
                config=one_epoch)
    two_epochs = TrainConfig(**{**FAST.to_dict(), "max_epochs": 2, "patience": 5})
    resumed = fit(DenseHeadTagger(DenseHeadConfig(checkpoint, LABELS)),
                  **window_datasets(tokenizer, train, dev, LABELS, two_epochs), output_dir=tmp_path / "run",
                  config=two_epochs)
    first_eval = [e for e in first if "eval_f1" in e]
    resumed_evals = [e for e in resumed if "eval_f1" in e]
    assert [e["epoch"] for e in resumed_evals] == [1.0, 2.0]
    # epoch 1 comes from the saved trainer state (a fresh run would have measured its own runtime)
    assert resumed_evals[0] == first_eval[0]


def test_train_teacher2_needs_samples(checkpoint, corpus, tmp_path):
    with pytest.raises(ValueError, match="unqualified"):
        train_teacher2([], corpus[1], LABELS, checkpoint, tmp_path / "t2", FAST)


def test_relabel_gives_word_logits(head, tokenizer, corpus):
    samples = corpus[1][:5]
    logits = teacher2_logits(head, tokenizer, samples, LABELS, FAST)
    assert [l.shape for l in logits] == [(len(s.tokens), len(LABELS)) for s in samples]
    with pytest.raises(ValueError, match="labels"):
        teacher2_logits(head, tokenizer, samples, LABELS[:-1], FAST)


def _logits_for(tags, labels):
    return np.eye(len(labels))[[labels.index(t) for t in tags]] * 5.0


def test_review_table_outcomes():
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    samples = [Sample("a", ["ann", "smith", "left"], ["B-PER", "I-PER", "O"], "hand"),
               Sample("b", ["to", "rome"], ["O", "B-LOC"], "hand"),
               Sample("c", ["hi", "bob"], ["O", "B-PER"], "hand"),
               Sample("d", ["in", "oslo"], ["O", "B-LOC"], "hand"),
               Sample("e", ["ok"], ["O"], "hand")]
    t1 = [["B-PER", "O", "O"], ["O", "O"], ["O", "B-LOC"], ["O", "B-LOC"], ["O"]]
    t2 = [["B-PER", "I-PER", "O"], ["O", "B-PER"], ["O", "B-LOC"], ["O", "O"], ["O"]]
    table = review_table(samples, [_logits_for(t, labels) for t in t1], [_logits_for(t, labels) for t in t2], labels)
    assert list(table.columns) == ["id", "tokens", "gold_tags", "t1_tags", "t2_tags", "t1_f1", "t1_cosine",
                                   "t1_confidence", "t1_euclidean", "t1_focal", "t2_f1", "t2_cosine", "t2_confidence",
                                   "t2_euclidean", "t2_focal", "changed", "outcome"]
    assert table["id"].tolist() == list("abcde")
    assert table["gold_tags"].tolist() == [s.tags for s in samples]
    assert table["t1_tags"].tolist() == t1 and table["t2_tags"].tolist() == t2
    assert table["changed"].tolist() == [True, True, False, True, False]
    assert table["outcome"].tolist() == ["fixed", "unchanged", "unchanged", "worse", "unchanged"]
    assert table["t1_f1"].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert table["t2_f1"].tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert set(table["outcome"]) <= set(OUTCOMES)
    assert ((table[["t1_cosine", "t2_cosine", "t1_confidence", "t2_confidence"]] >= 0).all()).all()


def test_review_table_rejects_mismatched_lengths():
    samples = [Sample("a", ["x"], ["O"], "hand")]
    with pytest.raises(ValueError, match="1 samples"):
        review_table(samples, [], [np.zeros((1, 1))], ["O"])
