"""Bad input tried wide: random and mutated CoNLL and JSONL files either read into exactly the samples they hold or
raise our DataError naming the file; never another library's traceback, never a silently dropped sample."""
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade_distill.data import DataError, read_conll, read_jsonl

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
token_text = st.text(alphabet=st.characters(blacklist_categories=("Zs", "Zl", "Zp", "Cc", "Cs")), min_size=1, max_size=6)
good_tag = st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B", "I"])
any_tag = st.one_of(good_tag, st.sampled_from(["X-PER", "B-", "E-LOC", "S-ORG", "b-per", "O-PER"]), token_text)
sentence = st.lists(st.tuples(token_text, any_tag), min_size=1, max_size=8)


def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@SETTINGS
@given(sentences=st.lists(sentence, min_size=0, max_size=6), crlf=st.booleans(), sep=st.sampled_from([" ", "\t"]))
def test_generated_conll_reads_every_sentence_or_fails_cleanly(tmp_path, sentences, crlf, sep):
    end = "\r\n" if crlf else "\n"
    text = (end + end).join(end.join(f"{tok}{sep}{tag}" for tok, tag in s) for s in sentences) + end
    path = _write(tmp_path, "gen.txt", text.encode("utf-8"))
    try:
        samples = read_conll(path)
    except DataError as err:
        assert str(err).startswith(str(path))
        return
    expected = [[tok for tok, _ in s] for s in sentences if not any(tok == "-DOCSTART-" for tok, _ in s[:1])]
    assert [s.tokens for s in samples] == expected  # counts in = counts out, tokens intact
    assert all(len(s.tags) == len(s.tokens) for s in samples)


@SETTINGS
@given(data=st.binary(max_size=300))
def test_random_bytes_conll_never_crash_elsewhere(tmp_path, data):
    path = _write(tmp_path, "noise.txt", data)
    try:
        samples = read_conll(path)
    except DataError as err:
        assert str(err).startswith(str(path))
    else:
        assert samples and all(len(s.tokens) == len(s.tags) > 0 for s in samples)


@SETTINGS
@given(base=st.lists(sentence, min_size=1, max_size=4), position=st.integers(0, 10_000),
       insert=st.sampled_from([b"\xff", b"\x00", b" extra", b"\n\n", b"\t", b"\r", b"B-", b"-DOCSTART- O\n"]))
def test_mutated_conll_reads_or_fails_cleanly(tmp_path, base, position, insert):
    text = "\n\n".join("\n".join(f"{tok} {tag}" for tok, tag in s) for s in base).encode() + b"\n"
    at = position % (len(text) + 1)
    path = _write(tmp_path, "mutated.txt", text[:at] + insert + text[at:])
    try:
        samples = read_conll(path)
    except DataError as err:
        assert str(err).startswith(str(path))
    else:
        assert all(len(s.tokens) == len(s.tags) > 0 for s in samples)


json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 50), st.text(max_size=8)),
                          lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6),
                                                                                              children, max_size=4),
                          max_leaves=10)
span = st.one_of(st.tuples(st.integers(-2, 30), st.integers(-2, 30), st.text(string.ascii_uppercase, max_size=4)),
                 st.fixed_dictionaries({"start": st.integers(-2, 30), "end": st.integers(-2, 30),
                                        "label": st.text(string.ascii_uppercase, max_size=4)}), json_value)
record = st.one_of(st.fixed_dictionaries({"text": st.text(max_size=30), "spans": st.lists(span, max_size=3)}),
                   json_value)


@SETTINGS
@given(records=st.lists(record, min_size=1, max_size=5))
def test_random_jsonl_reads_or_fails_cleanly(tmp_path, records):
    path = _write(tmp_path, "gen.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode() + b"\n")
    try:
        samples = read_jsonl(path)
    except DataError as err:
        assert str(err).startswith(str(path))
        return
    assert len(samples) == len(records)  # no record is dropped silently
    for sample, rec in zip(samples, records):
        assert len(sample.tokens) == len(sample.tags) > 0
        spans = [s for s in rec["spans"]]
        assert sum(t.startswith("B-") for t in sample.tags) == len(spans)


def test_checkpoint_folder_without_tokenizer_is_a_clear_error(tmp_path, tiny_checkpoint, tweets, capsys):
    import shutil

    from cascade_distill.cli import main
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(f"{tiny_checkpoint}/{name}", folder / name)
    train = tmp_path / "train.txt"
    train.write_text("\n\n".join("\n".join(f"{t} {g}" for t, g in zip(s.tokens, s.tags)) for s in tweets["train"][:20]))
    status = main(["run", "--train", str(train), "--dev", str(train), "--checkpoint", str(folder),
                   "--run-dir", str(tmp_path / "run")])
    assert status == 2
    assert f"{folder}: no usable tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "run" / "teacher1" / "model").exists()


def test_run_directory_with_an_unreadable_config_is_a_clear_error(tmp_path, tweets):
    from cascade_distill.pipeline import Cascade
    run = tmp_path / "run"
    Cascade(run, train=tweets["train"], dev=tweets["dev"])
    (run / "config.json").write_text(json.dumps({"treshold": 0.5}))  # a setting this version does not know
    with pytest.raises(ValueError, match=r"config.json: cannot read this run's config \(unknown cascade settings: "
                                         r"treshold\)"):
        Cascade(run)
