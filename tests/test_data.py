"""Readers and tag schemes: good input becomes samples, bad input raises DataError naming file, line and problem."""
import json

import pandas as pd
import pytest

from cascade_distill.data import (DataError, demo_corpus, from_dataframe, label_list, load_corpus, read_conll,
                                  read_jsonl, to_iob2)
from cascade_distill.encode import encode, load_tokenizer


def write(tmp_path, name, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("content, problem", [
    (b"EU NNP B-ORG\nrejects VBZ\n", ":2: expected 3 columns, found 2"),
    (b"EU B-ORG\nrejects Q-ORG\n", ":2: tag 'Q-ORG' has unknown prefix 'Q'"),
    (b"", ": file is empty"),
    (b"  \n\n", ": file is empty"),
    (b"EU B-ORG\n\nBonn B-LOC\n\xc3\x28 O\n", ":4: invalid UTF-8"),
    (b"EU B-ORG\nx B-\n", ":2: tag 'B-' has an empty type"),
])
def test_conll_errors_name_file_line_and_problem(tmp_path, content, problem):
    path = write(tmp_path, "bad.txt", content)
    with pytest.raises(DataError) as err:
        read_conll(path)
    assert str(err.value).startswith(str(path))
    assert problem in str(err.value)


def test_tag_outside_fixed_label_set(tmp_path):
    path = write(tmp_path, "dev.txt", b"Paris B-LOC\n\nApple B-ORG\n")
    with pytest.raises(DataError, match=r"dev.txt:3: tag 'B-ORG' is not in the label set"):
        read_conll(path, labels=["O", "B-LOC", "I-LOC"])


def test_crlf_docstart_and_whitespace_only_separator(tmp_path):
    path = write(tmp_path, "a.txt", b"-DOCSTART- -X- O\r\n\r\nEU x B-ORG\r\nsays x O\r\n\t \r\nBonn x B-LOC\r\n")
    samples = read_conll(path)
    assert [s.tokens for s in samples] == [["EU", "says"], ["Bonn"]]
    assert [s.tags for s in samples] == [["B-ORG", "O"], ["B-LOC"]]


@pytest.mark.parametrize("scheme, tags, expected", [
    ("IOB1", ["I-PER", "I-PER", "B-PER", "O", "I-LOC"], ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]),
    ("BIOES", ["S-PER", "B-LOC", "I-LOC", "E-LOC", "O"], ["B-PER", "B-LOC", "I-LOC", "I-LOC", "O"]),
    ("BMES", ["B-ORG", "M-ORG", "E-ORG", "S-LOC", "S-LOC"], ["B-ORG", "I-ORG", "I-ORG", "B-LOC", "B-LOC"]),
    ("IOB2", ["B", "I", "O", "I"], ["B-ENT", "I-ENT", "O", "B-ENT"]),
])
def test_schemes_convert_to_iob2(scheme, tags, expected):
    assert to_iob2(tags, scheme) == expected


def test_bmes_unknown_prefix_for_scheme(tmp_path):
    path = write(tmp_path, "zh.txt", "张 B-PER\n三 I-PER\n".encode())
    with pytest.raises(DataError, match=r"zh.txt:2: tag 'I-PER' has unknown prefix 'I' for scheme BMES"):
        read_conll(path, scheme="BMES")


def test_jsonl_chinese_per_character_and_errors(tmp_path):
    good = write(tmp_path, "zh.jsonl", json.dumps({"text": "李明在北京", "spans": [[0, 2, "PER"], [3, 5, "LOC"]]},
                                                   ensure_ascii=False).encode() + b"\n")
    [sample] = read_jsonl(good)
    assert sample.tokens == list("李明在北京")
    assert sample.tags == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    bad = write(tmp_path, "b.jsonl", b'{"text": "ok", "spans": []}\n{"text": "New York", "spans": [[0, 6, "LOC"]]}\n')
    with pytest.raises(DataError, match=r"b.jsonl:2: span \[0, 6\) 'New Yo' does not fall on token boundaries"):
        read_jsonl(bad)
    outside = write(tmp_path, "c.jsonl", b'{"text": "ab", "spans": [[0, 9, "X"]]}\n')
    with pytest.raises(DataError, match=r"c.jsonl:1: span \[0, 9\) is outside the text"):
        read_jsonl(outside)
    with pytest.raises(DataError, match=r"d.jsonl: file is empty"):
        load_corpus(write(tmp_path, "d.jsonl", b"\n"))


def test_dataframe_reader_reports_row():
    df = pd.DataFrame({"tokens": [["a"], ["b", "c"]], "tags": [["O"], ["B-X"]]})
    with pytest.raises(DataError, match=r"dataframe:1: row 1 has 2 tokens and 1 tags"):
        from_dataframe(df)


def test_demo_corpus_counts_and_seeded_split():
    parts = demo_corpus(seed=3)
    assert sum(len(p) for p in parts.values()) == 2394
    assert {s.id for s in parts["train"]}.isdisjoint({s.id for s in parts["test"]})
    assert [s.id for s in demo_corpus(seed=3)["dev"]] == [s.id for s in parts["dev"]]
    assert [s.id for s in demo_corpus(seed=4)["dev"]] != [s.id for s in parts["dev"]]
    assert "B-person" in label_list(parts["train"])


def test_long_samples_use_windows_not_truncation(tiny_checkpoint, tweets):
    tokenizer = load_tokenizer(tiny_checkpoint)
    words = [t for s in tweets["train"] for t in s.tokens][:700]  # far beyond 128 subwords
    windows = encode(tokenizer, [words], max_length=128, stride=32)
    assert len(windows) > 1 and all(len(w.input_ids) <= 128 for w in windows)
    covered = set()
    for w in windows:
        covered.update(range(w.word_start, w.word_end))
    assert covered == set(range(len(words)))


def test_shared_conll2003_reads_with_published_counts():
    from conftest import SHARED
    path = SHARED / "data" / "conll2003" / "dev.txt"
    if not path.exists():
        pytest.skip("shared CoNLL-2003 not present")
    samples = read_conll(path)
    assert len(samples) == 3250
    assert sum(len(s.tokens) for s in samples) == 51362
