"""Safety against inputs that read wrongly without an error: characters that are not line breaks, control characters,
duplicated ids and keys, entity types that are none, a dev set that is the training set (issue 19)."""
import json
import warnings

import pytest

from cascade_distill import data
from cascade_distill.data import DataError, DataWarning, read_conll, read_jsonl, read_lines, read_unlabeled


def _write(tmp_path, name, data) -> str:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


@pytest.mark.parametrize("char", ["\x0c", "\x85", "\u2028", "\u2029", "\x1c", "\x0b"])
def test_only_newlines_end_a_line(tmp_path, char):
    "Lines end at \\n or \\r\\n only: a form feed, U+0085, U+2028... inside a line is that line's content."
    path = _write(tmp_path, "lines.txt", f"one{char}still one\r\ntwo\n")
    assert read_lines(path) == [f"one{char}still one", "two"]


@pytest.mark.parametrize("char", ["\x0c", "\x85", "\u2028", "\x00", "\x1f"])
def test_a_control_character_in_a_conll_token_is_named_with_its_line(tmp_path, char):
    path = _write(tmp_path, "ctl.txt", f"EU B-ORG\nre{char}jects O\nit O\n\nBonn B-LOC\n")
    with pytest.raises(DataError, match=rf"ctl.txt:2: token .* contains the control character U\+{ord(char):04X}"):
        read_conll(path)


def test_a_nul_in_a_tag_is_an_error_not_a_new_entity_type(tmp_path):
    path = _write(tmp_path, "nul.txt", "EU B-ORG\x00\nrejects O\n")
    with pytest.raises(DataError, match=r"nul.txt:1: tag 'B-ORG\\x00' contains the control character U\+0000"):
        read_conll(path)


def test_valid_jsonl_with_a_raw_line_separator_reads_and_later_lines_keep_their_numbers(tmp_path):
    first = json.dumps({"text": "Ann\u2028met Bo", "spans": [[0, 3, "PER"]]}, ensure_ascii=False)
    second = json.dumps({"text": "Bo", "spans": [[0, 5, "PER"]]})
    path = _write(tmp_path, "ls.jsonl", f"{first}\n{second}\n")
    with pytest.raises(DataError, match=r"ls.jsonl:2: span \[0, 5\) is outside the text"):
        read_jsonl(path)
    path = _write(tmp_path, "ok.jsonl", f"{first}\n")
    [sample] = read_jsonl(path)
    assert (sample.tokens, sample.tags) == (["Ann", "met", "Bo"], ["B-PER", "O", "O"])


def test_unlabeled_text_with_a_line_separator_is_one_sentence(tmp_path):
    path = _write(tmp_path, "raw.txt", "Ann met\u2028Bo in Rome\nsecond line\n")
    assert [s.tokens for s in read_unlabeled(path)] == [["Ann", "met", "Bo", "in", "Rome"], ["second", "line"]]


def test_a_control_character_in_jsonl_tokens_is_named_with_its_line(tmp_path):
    records = [{"tokens": ["Ann"], "tags": ["B-PER"]}, {"tokens": ["E\x00U", "x"], "tags": ["B-ORG", "O"]}]
    path = _write(tmp_path, "ctl.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(DataError, match=r"ctl.jsonl:2: token 'E\\x00U' contains the control character U\+0000"):
        read_jsonl(path)


def test_duplicate_sample_ids_fail_at_reading_naming_both_lines(tmp_path):
    records = [{"id": "a", "tokens": ["Ann"], "tags": ["B-PER"]}, {"id": "b", "tokens": ["x"], "tags": ["O"]},
               {"id": "a", "tokens": ["Bo"], "tags": ["B-PER"]}]
    path = _write(tmp_path, "ids.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(DataError, match=r"ids.jsonl:3: sample id 'a' is used twice \(first at .*ids.jsonl:1\)"):
        read_jsonl(path)


def test_a_duplicated_json_key_is_an_error_not_a_lost_value(tmp_path):
    path = _write(tmp_path, "keys.jsonl", '{"text": "Ann", "spans": [[0, 3, "PER"]], "spans": []}\n')
    with pytest.raises(DataError, match=r"keys.jsonl:1: key 'spans' appears twice"):
        read_jsonl(path)
    path = _write(tmp_path, "keys.txt.jsonl", '{"text": "Ann", "text": "Bo"}\n')
    with pytest.raises(DataError, match=r"keys.txt.jsonl:1: key 'text' appears twice"):
        read_unlabeled(path, format="jsonl")


@pytest.mark.parametrize("label", ["O", "B-", "I- ", ""])
def test_a_span_label_that_names_no_type_is_an_error(tmp_path, label):
    path = _write(tmp_path, "o.jsonl", json.dumps({"text": "Ann met Bo", "spans": [[0, 3, label]]}) + "\n")
    with pytest.raises(DataError, match=r"o.jsonl:1: span"):
        read_jsonl(path)


@pytest.mark.parametrize("tag", ["B-O", "I-O", "B- "])
def test_a_tag_whose_type_is_outside_or_empty_is_an_error(tmp_path, tag):
    path = _write(tmp_path, "type.jsonl", json.dumps({"tokens": ["Ann"], "tags": [tag]}) + "\n")
    with pytest.raises(DataError, match=r"type.jsonl:1: tag"):
        read_jsonl(path)


def test_a_dev_set_identical_to_train_warns_naming_the_files(tmp_path):
    text = "EU B-ORG\nrejects O\n\nBonn B-LOC\n"
    train, dev = read_conll(_write(tmp_path, "train.txt", text)), read_conll(_write(tmp_path, "dev.txt", text))
    with pytest.warns(DataWarning, match=r"dev.txt: the dev samples are the train samples \(.*train.txt\)"):
        data.warn_if_parts_repeat({"train": train, "dev": dev})
    other = read_conll(_write(tmp_path, "other.txt", "Rome B-LOC\n\nAnn B-PER\n"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.warn_if_parts_repeat({"train": train, "dev": other})


def test_latin1_input_names_file_and_line_and_an_empty_file_may_be_allowed(tmp_path):
    path = _write(tmp_path, "latin1.txt", "caf\xe9\n".encode("utf-8") + "na\xefve\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt:2: invalid UTF-8 \(byte 0xef"):
        read_lines(path)
    assert read_lines(_write(tmp_path, "empty.txt", b""), empty_ok=True) == []
