"""Serving anywhere: the ONNX student in a process where torch cannot be imported gives the torch student's tags; the
weights' SHA-256 is checked on load; students saved before the feature hash was named still load; the CLI serves
blank input and .onnx files; the spaCy component and the Hub round trip (offline, from a local cache) work."""
import io
import json
import shutil
import subprocess
import sys
from importlib.metadata import entry_points

import numpy as np
import pandas as pd
import pytest

from cascade_distill.cli import main
from cascade_distill.features import FEATURE_HASH, LEGACY_FEATURE_HASH, murmurhash3_x86_32
from cascade_distill.serving import OnnxStudent, export_onnx, load_tagger
from cascade_distill.student import Student, StudentConfig, train_student
from cascade_distill.training import TrainConfig

FAST = TrainConfig(max_epochs=2, patience=2, batch_size=8, learning_rate=1e-2, warmup=0.0, progress=False)

# a meta-path finder that makes every import of torch, transformers or pandas fail, installed before anything else
BLOCKER = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "pandas"):
            raise ImportError(f"{name} is blocked: serving must not need it")
sys.meta_path.insert(0, NoTorch())
"""

SERVE = BLOCKER + """
import json
from cascade_distill.serving import OnnxStudent
tagger = OnnxStudent.from_path(sys.argv[1])
token_lists, texts = json.load(open(sys.argv[2]))
print(json.dumps({"tags": tagger.predict_tags(token_lists, 7), "spans": tagger.predict(texts),
                  "heavy": sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers", "pandas"})}))
"""


@pytest.fixture(scope="module")
def trained(tweets, labels, tmp_path_factory):
    "A tiny student trained two epochs on the tweets' gold tags, saved, and its ONNX export."
    config = StudentConfig(labels, word_dim=16, width=24, depth=2, kernel_sizes=(3,), dropout=0.1)
    student, _ = train_student(tweets["train"], tweets["dev"], labels, tmp_path_factory.mktemp("train"), config=FAST,
                               student_config=config)
    folder = student.save_pretrained(tmp_path_factory.mktemp("student") / "model")
    return student, folder, export_onnx(folder, folder.parent / "student.onnx")


@pytest.fixture(scope="module")
def noisy(trained, tmp_path_factory):
    "The same architecture with random weights, as saved and exported: its tags are all over the place, not only O."
    import torch
    from cascade_distill.student import TextCNNTagger
    student = trained[0]
    torch.manual_seed(0)
    folder = Student(TextCNNTagger(student.config), student.featurizer).save_pretrained(tmp_path_factory.mktemp("noisy"))
    return Student.from_pretrained(folder), folder, export_onnx(folder, folder / "noisy.onnx")


@pytest.fixture(scope="module")
def held_out(tweets):
    return [s.tokens for s in tweets["test"]]


def without_scores(predictions):
    return [[{k: v for k, v in span.items() if k != "score"} for span in spans] for spans in predictions]


def test_blocker_blocks_torch():
    "The subprocess below really cannot import torch (else the torch-free test would prove nothing)."
    run = subprocess.run([sys.executable, "-c", BLOCKER + "import torch"], capture_output=True, text=True)
    assert run.returncode != 0 and "torch is blocked" in run.stderr


@pytest.mark.parametrize("which", ["trained", "noisy"])
def test_onnx_serving_without_torch_gives_torch_tags(which, request, held_out, tmp_path):
    student, _, onnx_path = request.getfixturevalue(which)
    texts = [" ".join(tokens) for tokens in held_out[:15]] + ["", "   ", "Barack Obama visited Paris ."]
    (tmp_path / "input.json").write_text(json.dumps([held_out, texts]))
    run = subprocess.run([sys.executable, "-c", SERVE, str(onnx_path), str(tmp_path / "input.json")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    served = json.loads(run.stdout)
    assert served["heavy"] == []
    assert served["tags"] == student.predict_tags(held_out)
    if which == "noisy":  # agreement not only on O
        assert sum(t != "O" for tags in served["tags"] for t in tags) > 100
    torch_spans = student.predict(texts)
    assert without_scores(served["spans"]) == without_scores(torch_spans)
    assert [s["score"] for p in served["spans"] for s in p] == pytest.approx(
        [s["score"] for p in torch_spans for s in p], abs=2e-4)


def test_package_and_serving_import_no_torch():
    probe = ("import sys, cascade_distill, cascade_distill.serving, cascade_distill.features; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'pandas', 'onnx'}))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_murmurhash_is_spacys(tweets):
    "Our MurmurHash3 x86_32 is bit for bit the one spaCy's `murmurhash` package computes, on real words."
    mrmr = pytest.importorskip("murmurhash.mrmr")
    words = sorted({w for s in tweets["train"] for w in s.tokens})[:500]
    for seed in (0, 1, 3):
        assert [murmurhash3_x86_32(w.encode("utf-8"), seed) for w in words] == [
            mrmr.hash(w, seed) & 0xFFFFFFFF for w in words]


def test_flipped_byte_in_the_weights_is_refused(trained, tmp_path):
    _, folder, onnx_path = trained
    copy = shutil.copytree(folder, tmp_path / "copy")
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, in the middle of the tensors
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"copy/model.safetensors: SHA-256 [0-9a-f]{64} differs from the [0-9a-f]{64} "
                                         r"recorded in .*config.json"):
        Student.from_pretrained(copy)
    assert main(["predict", "--model", str(copy), "--input", str(copy / "labels.json")]) == 2
    onnx_data = bytearray(onnx_path.read_bytes())
    onnx_data[len(onnx_data) // 3] ^= 0x01  # inside the fused table's weights
    (tmp_path / "damaged.onnx").write_bytes(bytes(onnx_data))
    with pytest.raises(ValueError, match="damaged.onnx: SHA-256 of the graph and weights"):
        OnnxStudent.from_path(tmp_path / "damaged.onnx")


def test_student_saved_before_the_hash_was_named_loads_with_its_hash(trained, held_out, tmp_path):
    "A config.json without format_version (as every student saved before) reads its features with pandas' hash."
    student, folder, _ = trained
    old = shutil.copytree(folder, tmp_path / "old")
    config = json.loads((old / "config.json").read_text())
    for key in ("format_version", "feature_hash", "weights_sha256"):
        del config[key]
    (old / "config.json").write_text(json.dumps(config))
    legacy = Student.from_pretrained(old)
    assert legacy.config.feature_hash == LEGACY_FEATURE_HASH and student.config.feature_hash == FEATURE_HASH
    # the ids the earlier version computed: pandas' hash_array with the per-row keys, modulo the rows
    norms = np.asarray(["paris", "obama"], dtype=object)
    earlier = np.stack([pd.util.hash_array(norms, hash_key=f"cascade-distill{i:01x}", categorize=True) % 5000
                        for i in range(legacy.config.hashes)], axis=1)
    rows = legacy.featurizer.featurize(["Paris", "Obama"])
    assert (rows[:, :legacy.config.hashes] == earlier % legacy.config.feature_rows[0]).all()
    assert (rows != student.featurizer.featurize(["Paris", "Obama"])).any()  # the hash matters
    served = OnnxStudent.from_path(export_onnx(old, tmp_path / "old.onnx"))  # its export keeps the legacy hash
    assert served.config.feature_hash == LEGACY_FEATURE_HASH
    assert served.predict_tags(held_out) == legacy.predict_tags(held_out)
    (old / "config.json").write_text(json.dumps(config | {"format_version": 9}))
    with pytest.raises(ValueError, match="old/config.json: format_version 9, but this version .* reads up to 1"):
        Student.from_pretrained(old)


def _predict(argv, stdin_text, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin_text))
    status = main(["predict", *argv])
    captured = capsys.readouterr()
    return status, [json.loads(line) for line in captured.out.splitlines()], captured.err


@pytest.mark.parametrize("model", ["folder", "onnx"])
def test_cli_predict_blank_lines_and_batch_sizes(trained, model, monkeypatch, capsys, tmp_path):
    student, folder, onnx_path = trained
    path = str(folder if model == "folder" else onnx_path)
    status, rows, _ = _predict(["--model", path], "  \n", monkeypatch, capsys)
    assert status == 0 and rows == [{"text": "  ", "spans": []}]
    status, rows, _ = _predict(["--model", path], "", monkeypatch, capsys)
    assert status == 0 and rows == []
    status, rows, _ = _predict(["--model", path, "--tokenized"], "\n \n", monkeypatch, capsys)
    assert status == 0 and [r["spans"] for r in rows] == [[], []]
    for bad in ("0", "-3"):
        status, _, err = _predict(["--model", path, "--batch-size", bad], "Paris\n", monkeypatch, capsys)
        assert status == 2 and f"batch size must be a positive integer, got {bad}" in err
    text = "Barack Obama visited Paris and London ."
    (tmp_path / "in.txt").write_text(f"{text}\n\n{text}\n", encoding="utf-8")
    assert main(["predict", "--model", path, "--input", str(tmp_path / "in.txt"), "--output",
                 str(tmp_path / "out.jsonl"), "--batch-size", "1"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    expected = student.predict([text])[0]
    assert [r["text"] for r in rows] == [text, "", text] and rows[1]["spans"] == []
    assert without_scores([rows[0]["spans"]]) == without_scores([expected])
    assert all(0 < s["score"] <= 1 for s in rows[0]["spans"])


def test_load_tagger_picks_the_runtime_from_the_path(trained):
    _, folder, onnx_path = trained
    assert isinstance(load_tagger(onnx_path), OnnxStudent)
    assert isinstance(load_tagger(folder), Student)


def test_spacy_component_sets_doc_ents(noisy, held_out):
    spacy = pytest.importorskip("spacy")
    assert "cascade_student" in {e.name for e in entry_points(group="spacy_factories")}
    student, folder, onnx_path = noisy
    texts = [" ".join(tokens) for tokens in held_out[:25]]
    for model in (onnx_path, folder):
        nlp = spacy.blank("en")
        nlp.add_pipe("cascade_student", config={"model": str(model), "batch_size": 4})
        docs = list(nlp.pipe(texts))
        expected = student.predict([[t.text for t in doc] for doc in docs])
        assert [[(e.start, e.end, e.label_) for e in doc.ents] for doc in docs] == [
            [(s["start"], s["end"], s["label"]) for s in spans] for spans in expected]
        assert sum(len(doc.ents) for doc in docs) > 0
        assert [e._.cascade_score for d in docs for e in d.ents] == pytest.approx(
            [s["score"] for p in expected for s in p], abs=2e-4)
        assert nlp("").ents == ()


def test_hub_round_trip_offline(trained, held_out, tmp_path):
    "save_pretrained with a model card, laid out as a Hub cache snapshot, loaded by repo id without any network."
    student, _, _ = trained
    snapshot = tmp_path / "hub" / "models--acme--tweet-ner" / "snapshots" / ("a" * 40)
    student.save_pretrained(snapshot, model_card_for="acme/tweet-ner")
    (tmp_path / "hub" / "models--acme--tweet-ner" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tweet-ner" / "refs" / "main").write_text("a" * 40)
    card = (snapshot / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: cascade_distill\npipeline_tag: token-classification\n")
    assert 'Student.from_pretrained("acme/tweet-ner")' in card and student.config.feature_hash in card
    loaded = Student.from_pretrained("acme/tweet-ner", cache_dir=tmp_path / "hub", local_files_only=True)
    assert loaded.predict_tags(held_out) == student.predict_tags(held_out)
    with pytest.raises(FileNotFoundError, match="acme/unknown: no such student folder, and not a Hub model"):
        Student.from_pretrained("acme/unknown", cache_dir=tmp_path / "hub", local_files_only=True)
    with pytest.raises(FileNotFoundError, match="no such student folder"):
        Student.from_pretrained(tmp_path / "missing")
