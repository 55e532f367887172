"Word case as token types for the teachers (issue #21 item 1): ids, saving and loading, teacher 2, the pipeline, errors."
import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForTokenClassification, DistilBertConfig, DistilBertModel

from cascade_distill.cli import build_parser
from cascade_distill.config import CascadeConfig
from cascade_distill.encode import (CASE_TYPES, WindowDataset, _pad_batch, add_case_types, case_type, case_types_of,
                                    encode, load_tokenizer, predict_logits)
from cascade_distill.pipeline import Cascade, loss_inputs
from cascade_distill.settings import given_options
from cascade_distill.teacher1 import new_token_classifier, train_teacher1
from cascade_distill.teacher2 import DenseHeadTagger, train_teacher2
from cascade_distill.training import TrainConfig, window_datasets

QUICK = TrainConfig(max_epochs=2, patience=1, batch_size=16, learning_rate=5e-3, max_length=64, progress=False, seed=1)
WORDS = [["Obama", "visited", "NEW", "York", "in", "2009", ",", "McDonald", "said"],
         ["obama", "visited", "new", "york", "in", "2009", ",", "mcdonald", "said"]]


def class_names(words):
    return [CASE_TYPES[case_type(w)] for w in words]


def test_case_classes_of_words():
    assert class_names(WORDS[0]) == ["Capitalized", "lower", "UPPER", "Capitalized", "lower", "digits", "other",
                                     "mIxed", "lower"]
    assert class_names(["A", "ÉCOLE", "straße", "3.5%", "東京", "-", "x86"]) == [
        "Capitalized", "UPPER", "lower", "digits", "other", "other", "lower"]
    assert CASE_TYPES[0] == "special"  # id 0 is what special tokens and padding carry


def test_every_subword_carries_its_words_class(tiny_checkpoint):
    tokenizer = load_tokenizer(tiny_checkpoint)
    words = ["Unbelievablyverylongword", "PARIS", "x"]
    pieces = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
    assert len(pieces[0]) > 1  # the test needs a word of several subwords
    window = encode(tokenizer, [words], case_types=True)[0]
    expected = [0] + [2] * len(pieces[0]) + [3] * len(pieces[1]) + [1] * len(pieces[2]) + [0]
    assert window.token_type_ids == expected
    assert window.input_ids == encode(tokenizer, [words])[0].input_ids  # the subwords themselves do not change


def test_long_samples_keep_their_classes_in_every_window(tiny_checkpoint, tweets):
    tokenizer = load_tokenizer(tiny_checkpoint)
    words = [t for s in tweets["train"][:30] for t in s.tokens][:200]
    windows = encode(tokenizer, [words], max_length=32, stride=8, case_types=True)
    assert len(windows) > 3
    for w in windows:
        assert len(w.token_type_ids) == len(w.input_ids)
        assert [w.token_type_ids[i] for i in w.first_subword] == [case_type(t) for t in words[w.word_start:w.word_end]]
        assert w.token_type_ids[0] == w.token_type_ids[-1] == 0


def test_datasets_and_batches_hand_the_types_on(tiny_checkpoint, tweets, labels):
    tokenizer = load_tokenizer(tiny_checkpoint)
    windows = encode(tokenizer, WORDS, case_types=True)
    batch = _pad_batch(windows, tokenizer.pad_token_id)
    assert batch["token_type_ids"].shape == batch["input_ids"].shape
    assert batch["token_type_ids"][0, : len(windows[0].token_type_ids)].tolist() == windows[0].token_type_ids
    assert "token_type_ids" not in _pad_batch(encode(tokenizer, WORDS), 0)
    assert WindowDataset(windows)[1]["token_type_ids"] == windows[1].token_type_ids
    with_types = window_datasets(tokenizer, tweets["train"][:5], tweets["dev"][:5], labels, QUICK, case_types=True)
    plain = window_datasets(tokenizer, tweets["train"][:5], tweets["dev"][:5], labels, QUICK)
    assert "token_type_ids" in with_types["train_dataset"][0] and "token_type_ids" not in plain["train_dataset"][0]
    collated = with_types["data_collator"]([with_types["train_dataset"][i] for i in range(3)])
    assert collated["token_type_ids"].shape == collated["input_ids"].shape


def test_untrained_case_rows_change_nothing(tiny_checkpoint):
    "Every class row starts as the pretrained row 0, so the option starts from exactly the plain model."
    tokenizer = load_tokenizer(tiny_checkpoint)
    plain = AutoModelForTokenClassification.from_pretrained(tiny_checkpoint, num_labels=3)
    cased = add_case_types(copy.deepcopy(plain), tiny_checkpoint)
    rows = cased.bert.embeddings.token_type_embeddings.weight
    assert rows.shape[0] == len(CASE_TYPES) == cased.config.type_vocab_size
    assert torch.equal(rows, plain.bert.embeddings.token_type_embeddings.weight[:1].expand_as(rows))
    for a, b in zip(predict_logits(cased, tokenizer, WORDS), predict_logits(plain, tokenizer, WORDS)):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.fixture(scope="module")
def cased_teacher1(tiny_checkpoint, tweets, labels, tmp_path_factory):
    "A tiny teacher 1 trained with case types, saved as an ordinary checkpoint folder (with the tokenizer)."
    model, tokenizer, log = train_teacher1(tweets["train"], tweets["dev"], labels, tiny_checkpoint,
                                           tmp_path_factory.mktemp("t1") / "ckpt", QUICK, case_types=True)
    folder = tmp_path_factory.mktemp("t1-saved") / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer, folder


def test_saved_teacher1_is_a_standard_folder_that_predicts_the_same(cased_teacher1):
    model, tokenizer, folder = cased_teacher1
    saved = json.loads((folder / "config.json").read_text())
    assert saved["architectures"] == ["BertForTokenClassification"]
    assert saved["type_vocab_size"] == saved["cascade_case_types"] == len(CASE_TYPES)
    reloaded = AutoModelForTokenClassification.from_pretrained(folder)
    assert case_types_of(reloaded) == len(CASE_TYPES)
    for a, b in zip(predict_logits(model, tokenizer, WORDS), predict_logits(reloaded, load_tokenizer(folder), WORDS)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # the uncased tokenizer gives both sentences the same subwords: only the case rows tell them apart
    assert encode(tokenizer, WORDS[:1])[0].input_ids == encode(tokenizer, WORDS[1:])[0].input_ids
    upper, lower = predict_logits(reloaded, tokenizer, WORDS)
    assert not np.allclose(upper, lower, atol=1e-4)


def test_a_case_checkpoint_keeps_its_types_without_the_flag(cased_teacher1, tweets, labels, tmp_path):
    "Fine-tuning again from a folder that reads case types keeps reading them, though nobody says so."
    _, _, folder = cased_teacher1
    again, _, _ = train_teacher1(tweets["train"][:20], tweets["dev"][:10], labels, folder, tmp_path / "again",
                                 dataclasses.replace(QUICK, max_epochs=1))
    assert case_types_of(again) == len(CASE_TYPES)


def test_teacher2_reads_teacher1s_case_types(cased_teacher1, tweets, labels, tmp_path):
    _, tokenizer, folder = cased_teacher1
    unqualified = tweets["train"][:40]
    model, _, log = train_teacher2(unqualified, unqualified, labels, folder, tmp_path / "t2", QUICK)
    assert case_types_of(model) == len(CASE_TYPES)
    assert any("eval_f1" in entry for entry in log)
    reloaded = DenseHeadTagger.from_pretrained(model.save_pretrained(tmp_path / "t2-saved", tokenizer))
    assert case_types_of(reloaded) == len(CASE_TYPES)
    for a, b in zip(predict_logits(model, tokenizer, WORDS), predict_logits(reloaded, tokenizer, WORDS)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    upper, lower = predict_logits(reloaded, tokenizer, WORDS)
    assert not np.allclose(upper, lower, atol=1e-4)


def test_teacher2_from_a_pretrained_encoder_gets_case_types_when_asked(tiny_checkpoint, tweets, labels, tmp_path):
    one_epoch = dataclasses.replace(QUICK, max_epochs=1)
    cased, _, _ = train_teacher2(tweets["train"][:20], tweets["dev"][:10], labels, tiny_checkpoint, tmp_path / "a",
                                 one_epoch, case_types=True)
    plain, _, _ = train_teacher2(tweets["train"][:20], tweets["dev"][:10], labels, tiny_checkpoint, tmp_path / "b",
                                 one_epoch)
    assert (case_types_of(cased), case_types_of(plain)) == (len(CASE_TYPES), 0)
    assert plain.encoder.embeddings.token_type_embeddings.num_embeddings == 2  # untouched


@pytest.fixture(scope="module")
def distilbert_checkpoint(tiny_checkpoint, tmp_path_factory):
    "A tiny DistilBERT (no token type embeddings) with the tiny BERT's tokenizer."
    folder = tmp_path_factory.mktemp("distil") / "tiny-distilbert"
    tokenizer = load_tokenizer(tiny_checkpoint)
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                              max_position_embeddings=128)
    DistilBertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_an_encoder_without_token_types_is_refused_by_name(distilbert_checkpoint, tweets, labels, tmp_path):
    with pytest.raises(ValueError, match=r"tiny-distilbert: DistilBertForTokenClassification has no token type embeddings"):
        new_token_classifier(distilbert_checkpoint, labels, case_types=True)
    with pytest.raises(ValueError, match=r"tiny-distilbert: DistilBertModel has no token type embeddings"):
        train_teacher2(tweets["train"][:5], tweets["dev"][:5], labels, distilbert_checkpoint, tmp_path / "t2", QUICK,
                       case_types=True)
    # without the option it is an encoder like any other, also as teacher 2 (whose batches hold no token types)
    model, tokenizer, _ = train_teacher2(tweets["train"][:10], tweets["dev"][:5], labels, distilbert_checkpoint,
                                         tmp_path / "t2-plain", dataclasses.replace(QUICK, max_epochs=1))
    assert case_types_of(model) == 0 and len(predict_logits(model, tokenizer, WORDS)) == 2


def test_the_run_setting_its_option_and_fingerprint():
    assert CascadeConfig().teacher_case_types == "auto"  # the default since format 3 (see test_case_auto.py)
    assert CascadeConfig.from_dict({"format_version": 1}).teacher_case_types is False  # older runs: off
    assert CascadeConfig.from_dict(CascadeConfig(teacher_case_types=True).to_dict()).teacher_case_types is True
    args = build_parser().parse_args(["run", "--train", "t.txt", "--dev", "d.txt", "--teacher-case-types"])
    assert given_options(args, CascadeConfig)["teacher_case_types"] is True
    args = build_parser().parse_args(["run", "--train", "t.txt", "--dev", "d.txt", "--no-teacher-case-types"])
    assert given_options(args, CascadeConfig)["teacher_case_types"] is False
    assert loss_inputs(CascadeConfig(), False) == []  # earlier runs' fingerprints are unchanged
    assert loss_inputs(CascadeConfig(teacher_case_types=True), True) == ["case_types"]


def test_a_cascade_run_with_case_types(tiny_checkpoint, tweets, tmp_path):
    "Teacher 1, scoring and teacher 2 of a run with the option: both saved teachers read case types."
    config = CascadeConfig(checkpoint=tiny_checkpoint, teacher1=QUICK, teacher2=QUICK, teacher_case_types=True, seed=1,
                           threshold=0.99)
    cascade = Cascade(tmp_path / "run", config, **tweets)
    cascade.run_stage("teacher2")
    assert (cascade.split_table().route == "unqualified").any()  # so that teacher 2 was trained
    teacher1, _ = cascade.load_teacher1()
    teacher2, _ = cascade.load_teacher2()
    assert case_types_of(teacher1) == case_types_of(teacher2) == len(CASE_TYPES)
