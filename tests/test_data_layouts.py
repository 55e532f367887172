"""The common corpus layouts (JSONL spans and token tags, Hugging Face datasets), their errors and warnings, the
vocabulary-coverage check and the data overview."""
import json
import warnings

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value, disable_progress_bars

from cascade_distill.data import (DataError, DataWarning, Sample, check_vocabulary, corpus_overview, from_hf_dataset,
                                  inspect_text, load_corpus, overview_figure, read_jsonl, unknown_word_share)
from cascade_distill.encode import load_tokenizer

disable_progress_bars()

NER_NAMES = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
FEATURES = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=NER_NAMES))})


def write_jsonl(tmp_path, name, records):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def entity_free_warnings(read):
    "Run `read()` and return the messages of the DataWarnings it raised."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read()
    return [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


@pytest.mark.parametrize("key", ["spans", "entities", "label"])
@pytest.mark.parametrize("form", ["list", "dict"])
def test_jsonl_character_spans_under_each_key_and_form(tmp_path, key, form):
    span = [0, 8, "LOC"] if form == "list" else {"start": 0, "end": 8, "label": "LOC"}
    person = [13, 16, "PER"] if form == "list" else {"start": 13, "end": 16, "label": "PER"}
    path = write_jsonl(tmp_path, "c.jsonl", [{"text": "New York and Ann", key: [span, person]}])
    [sample] = load_corpus(path)
    assert sample.tokens == ["New", "York", "and", "Ann"]
    assert sample.tags == ["B-LOC", "I-LOC", "O", "B-PER"]


def test_issue_examples_are_no_longer_read_as_outside(tmp_path):
    entities = write_jsonl(tmp_path, "e.jsonl", [{"text": "New York", "entities": [{"start": 0, "end": 8,
                                                                                      "label": "LOC"}]}])
    doccano = write_jsonl(tmp_path, "d.jsonl", [{"text": "New York", "label": [[0, 8, "LOC"]]}])
    assert read_jsonl(entities)[0].tags == read_jsonl(doccano)[0].tags == ["B-LOC", "I-LOC"]


@pytest.mark.parametrize("tags_key", ["tags", "ner_tags"])
def test_token_jsonl_with_tag_names(tmp_path, tags_key):
    path = write_jsonl(tmp_path, "t.jsonl", [{"id": "s1", "tokens": ["Ann", "in", "New", "York"],
                                              tags_key: ["B-PER", "O", "B-LOC", "I-LOC"]}])
    [sample] = load_corpus(path)
    assert (sample.id, sample.tags) == ("s1", ["B-PER", "O", "B-LOC", "I-LOC"])


def test_tokens_with_tags_win_over_a_text_without_spans(tmp_path):
    path = write_jsonl(tmp_path, "both.jsonl", [{"text": "Ann ran", "tokens": ["Ann", "ran"], "ner_tags": ["B-PER", "O"]}])
    assert load_corpus(path)[0].tags == ["B-PER", "O"]
    with_spans = write_jsonl(tmp_path, "s.jsonl", [{"text": "Ann ran", "tokens": ["Ann", "ran"], "spans": [[4, 7, "ACT"]],
                                                    "tags": ["B-PER", "O"]}])
    assert load_corpus(with_spans)[0].tags == ["O", "B-ACT"]


def test_token_jsonl_with_tag_ids_and_a_label_list(tmp_path):
    path = write_jsonl(tmp_path, "ids.jsonl", [{"tokens": ["Ann", "in", "New", "York"], "ner_tags": [1, 0, 3, 4]}])
    assert load_corpus(path, tag_names=NER_NAMES)[0].tags == ["B-PER", "O", "B-LOC", "I-LOC"]
    with pytest.raises(DataError, match=r"ids.jsonl:1: tags are integer ids .* pass tag_names="):
        load_corpus(path)
    with pytest.raises(DataError, match=r"ids.jsonl:1: tag id 3 is outside the 3 tag names"):
        load_corpus(path, tag_names=NER_NAMES[:3])


def test_token_jsonl_in_another_scheme_and_length_mismatch(tmp_path):
    path = write_jsonl(tmp_path, "b.jsonl", [{"tokens": ["Bo", "Li", "ran"], "tags": ["B-PER", "E-PER", "O"]}])
    assert load_corpus(path, scheme="BIOES")[0].tags == ["B-PER", "I-PER", "O"]
    bad = write_jsonl(tmp_path, "m.jsonl", [{"tokens": ["a", "b"], "tags": ["O"]}])
    with pytest.raises(DataError, match=r"m.jsonl:1: 2 tokens but 1 tags under 'tags'"):
        load_corpus(bad)


def test_chosen_keys(tmp_path):
    spans = write_jsonl(tmp_path, "k.jsonl", [{"body": "New York", "annotations": [[0, 8, "LOC"]]}])
    assert load_corpus(spans, text_key="body", spans_key="annotations")[0].tags == ["B-LOC", "I-LOC"]
    tokens = write_jsonl(tmp_path, "w.jsonl", [{"words": ["New", "York"], "labels": ["B-LOC", "I-LOC"]}])
    assert load_corpus(tokens, text_key="words", tags_key="labels")[0].tags == ["B-LOC", "I-LOC"]


def test_unknown_layout_names_file_line_keys_and_options(tmp_path):
    path = write_jsonl(tmp_path, "u.jsonl", [{"text": "fine", "spans": []}, {"sentence": "New York", "ents": []}])
    with pytest.raises(DataError) as err:
        load_corpus(path)
    message = str(err.value)
    assert message.startswith(f"{path}:2: no 'text' or 'tokens' key; keys found: 'sentence', 'ents'.")
    for option in ("text_key=", "spans_key=", "tags_key=", "--text-key", "--spans-key", "--tags-key"):
        assert option in message
    tokens_only = write_jsonl(tmp_path, "v.jsonl", [{"tokens": ["a"], "labels": ["O"]}])
    with pytest.raises(DataError, match=r"v.jsonl:1: tokens without tags; keys found: 'tokens', 'labels'.*--tags-key"):
        load_corpus(tokens_only)


def test_entity_free_jsonl_warns_with_the_keys_found(tmp_path):
    path = write_jsonl(tmp_path, "n.jsonl", [{"text": "New York", "ents": [[0, 8, "LOC"]]}, {"text": "Hi"}])
    [message] = entity_free_warnings(lambda: load_corpus(path))
    assert message.startswith(f"{path}: no sentence has any entity (2 read")
    assert "'text', 'ents'" in message and "--spans-key" in message
    with_entities = write_jsonl(tmp_path, "y.jsonl", [{"text": "New York", "spans": [[0, 8, "LOC"]]}, {"text": "Hi"}])
    assert entity_free_warnings(lambda: load_corpus(with_entities)) == []


def test_entity_free_conll_and_dataset_warn(tmp_path):
    conll = tmp_path / "o.txt"
    conll.write_text("EU O\nrejects O\n\nBonn O\n")
    [message] = entity_free_warnings(lambda: load_corpus(conll))
    assert message.startswith(f"{conll}: no sentence has any entity") and "--tag-col" in message
    dataset = Dataset.from_dict({"tokens": [["Hi"]], "ner_tags": [[0]]}, features=FEATURES)
    [message] = entity_free_warnings(lambda: from_hf_dataset(dataset))
    assert "'tokens', 'ner_tags'" in message


def hf_corpus():
    return DatasetDict({
        "train": Dataset.from_dict({"tokens": [["Ann", "in", "Rome"], ["Hi", "Bo", "Li"]],
                                    "ner_tags": [[1, 0, 3], [0, 1, 2]]}, features=FEATURES),
        "validation": Dataset.from_dict({"tokens": [["Paris"]], "ner_tags": [[3]]}, features=FEATURES)})


def test_hf_dataset_in_memory_uses_class_label_names():
    corpus = hf_corpus()
    train = from_hf_dataset(corpus["train"])
    assert [s.tags for s in train] == [["B-PER", "O", "B-LOC"], ["O", "B-PER", "I-PER"]]
    by_split = from_hf_dataset(corpus)
    assert list(by_split) == ["train", "validation"] and by_split["validation"][0].tags == ["B-LOC"]
    assert load_corpus(corpus, split="validation")[0].tokens == ["Paris"]
    with pytest.raises(DataError, match=r"no split chosen: the dataset has splits train, validation"):
        load_corpus(corpus)


def test_hf_dataset_of_string_tags_and_of_spans():
    tags = Dataset.from_dict({"tokens": [["Ann", "ran"]], "tags": [["I-PER", "O"]]})
    [sample] = from_hf_dataset(tags)
    assert sample.tags == ["B-PER", "O"] and sample.repairs == [(0, "I-PER", "B-PER")]
    spans = Dataset.from_list([{"text": "Ann ran", "entities": [{"start": 0, "end": 3, "label": "PER"}]}])
    assert from_hf_dataset(spans)[0].tags == ["B-PER", "O"]


def test_saved_dataset_folder(tmp_path):
    folder = tmp_path / "corpus"
    hf_corpus().save_to_disk(str(folder))
    assert [s.tags for s in load_corpus(folder, split="train")][1] == ["O", "B-PER", "I-PER"]
    assert load_corpus(folder / "validation")[0].tags == ["B-LOC"]  # a split's own folder
    with pytest.raises(DataError, match=rf"{folder}: no split chosen: .* or pass the split's folder"):
        load_corpus(folder)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(DataError, match=r"plain: not a dataset saved with save_to_disk"):
        load_corpus(plain)


def chinese_samples():
    text = "王小明，男，毕业于北京大学计算机系，现任上海某公司工程师。"
    return [Sample("zh-0", list(text), ["O"] * len(text))]


def test_unknown_word_share_and_warning(tiny_checkpoint, tweets):
    tokenizer = load_tokenizer(tiny_checkpoint)  # WordPiece trained on the tweets: no Chinese characters
    english = unknown_word_share(tokenizer, tweets["train"])
    assert english.words == sum(len(s.tokens) for s in tweets["train"]) and english.share < 0.05
    chinese = unknown_word_share(tokenizer, chinese_samples(), examples=3)
    assert chinese.share > 0.5 and len(chinese.examples) == 3
    assert set(chinese.examples) <= set(chinese_samples()[0].tokens)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert check_vocabulary(tokenizer, tweets["train"]).share == english.share
        assert caught == []
        check_vocabulary(tokenizer, chinese_samples())
    [warning] = caught
    assert warning.category is DataWarning
    message = str(warning.message)
    assert f"{chinese.share:.1%} of the training words" in message
    assert "--checkpoint" in message and "Chinese BERT" in message and repr(chinese.examples[0]) in message


def test_overview_tables_and_text(tmp_path, tweets):
    stray = tmp_path / "train.txt"
    stray.write_text("in I-LOC\nParis I-LOC\n\nAnn B-PER\nlikes O\nRome I-LOC\n")
    dev = write_jsonl(tmp_path, "dev.jsonl", [{"text": "Bo met Ann in Oslo", "spans": [[0, 2, "ORG"], [7, 10, "PER"]]}])
    report = inspect_text([stray, dev], window=4)
    assert report.startswith("Corpora\n-------")
    overview = corpus_overview({"train": load_corpus(stray), "dev": load_corpus(dev)}, window=4)
    summary = overview["summary"]
    assert summary.loc["train", "sentences"] == 2 and summary.loc["dev", "words"] == 5
    assert summary.loc["train", "tag repairs"] == 2 and summary.loc["dev", "over 4 words"] == 1
    assert overview["entities"].loc["ORG", "missing from"] == "train"
    assert overview["entities"].loc["LOC", ["train", "dev"]].tolist() == [2, 0]
    repairs = overview["repairs"]
    assert repairs[["corpus", "tag in file", "read as", "count"]].values.tolist() == [["train", "I-LOC", "B-LOC", 2]]
    assert repairs.example[0] == f"{stray}:1"
    for text in ("I-LOC", "ORG", "missing from"):
        assert text in report
    figure = overview_figure(overview)
    assert [trace.name for trace in figure.data] == ["train", "train", "dev", "dev"]


def test_overview_in_subwords(tiny_checkpoint, tweets):
    tokenizer = load_tokenizer(tiny_checkpoint)
    overview = corpus_overview(tweets, window=16, tokenizer=tokenizer)
    lengths = [len(tokenizer(s.tokens, is_split_into_words=True)["input_ids"]) for s in tweets["dev"]]
    assert overview["summary"].loc["dev", "over 16 subwords"] == sum(n > 16 for n in lengths)
    assert overview["lengths"].index.name == "subwords per sample"
    assert overview["lengths"]["dev"].sum() == len(tweets["dev"])
    share = unknown_word_share(tokenizer, tweets["dev"]).share
    assert overview["summary"].loc["dev", "unknown word share"] == round(share, 4)


def test_inspect_text_ends_with_reading_warnings(tmp_path):
    train = write_jsonl(tmp_path, "train.jsonl", [{"text": "New York", "spans": [[0, 8, "LOC"]]}])
    dev = write_jsonl(tmp_path, "dev.jsonl", [{"text": "Paris", "ents": [[0, 5, "LOC"]]}])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning is in the text, not raised
        report = inspect_text([train, dev])
    warnings_part = report.split("Warnings\n--------\n")[1]
    assert warnings_part.startswith(f"- {dev}: no sentence has any entity") and "'ents'" in warnings_part
    assert "Warnings" not in inspect_text([train])
