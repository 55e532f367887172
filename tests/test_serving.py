"""The ONNX serving path: an exported student gives torch's tags through ONNX Runtime, at any batch size and length;
the int8 model loads and predicts; bad paths get clear errors."""
import sys

import numpy as np
import onnx
import pytest
import torch

from cascade_distill.cli import main
from cascade_distill.scoring import corpus_f1
from cascade_distill.serving import METADATA_KEYS, OnnxStudent, compare_runtimes, export_onnx, model_sha256
from cascade_distill.student import Student, StudentConfig, TextCNNTagger, train_student
from cascade_distill.training import TrainConfig

FAST = TrainConfig(max_epochs=3, patience=3, batch_size=8, learning_rate=1e-2, warmup=0.0, progress=False)


@pytest.fixture(scope="module")
def trained(tweets, labels, tmp_path_factory):
    "A small student trained a few epochs on the gold tags of the tweets' training split, saved to a folder."
    config = StudentConfig(labels, word_dim=32, width=32, depth=2, kernel_sizes=(3, 5), dilation_base=2, dropout=0.1)
    student, _ = train_student(tweets["train"], tweets["dev"], labels, tmp_path_factory.mktemp("train"), config=FAST,
                               student_config=config)
    return student, student.save_pretrained(tmp_path_factory.mktemp("student") / "model")


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    return export_onnx(trained[1], tmp_path_factory.mktemp("onnx") / "student.onnx")


def without_scores(predictions):
    return [[{k: v for k, v in span.items() if k != "score"} for span in spans] for spans in predictions]


@pytest.fixture(scope="module")
def held_out(tweets):
    return [s.tokens for s in tweets["test"]]


def test_onnx_gives_torch_tags_and_logits_on_held_out_tweets(trained, exported, held_out):
    student, _ = trained
    served = OnnxStudent.from_path(exported, threads=1)
    assert served.labels == student.labels
    assert served.predict_tags(held_out) == student.predict_tags(held_out)
    for onnx_logits, torch_logits in zip(served.predict_logits(held_out), student.predict_logits(held_out)):
        np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)
    texts = [" ".join(tokens) for tokens in held_out[:10]] + ["Barack Obama visited Paris ."]
    served_spans, torch_spans = served.predict(texts), student.predict(texts)
    assert without_scores(served_spans) == without_scores(torch_spans)
    assert [s["score"] for p in served_spans for s in p] == pytest.approx([s["score"] for p in torch_spans for s in p],
                                                                         abs=2e-4)


def test_dynamic_batch_and_length(trained, exported, held_out):
    student, _ = trained
    served = OnnxStudent.from_path(exported)
    for batch_size in (1, 7, len(held_out)):
        assert served.predict_tags(held_out, batch_size) == student.predict_tags(held_out, batch_size)
    long_sample = [w for tokens in held_out for w in tokens][:500]
    assert len(long_sample) == 500
    np.testing.assert_allclose(served.predict_logits([long_sample])[0], student.predict_logits([long_sample])[0],
                               atol=1e-4)
    assert served.predict_tags([long_sample, [], ["one"]]) == student.predict_tags([long_sample, [], ["one"]])
    assert served.predict_tags([[], []]) == [[], []]


def test_agreement_is_not_only_on_o(trained, held_out, tmp_path):
    "An untrained student tags all over the place: ONNX must still match it tag for tag."
    student, _ = trained
    torch.manual_seed(1)
    folder = Student(TextCNNTagger(student.config), student.featurizer).save_pretrained(tmp_path / "random")
    tags = Student.from_pretrained(folder).predict_tags(held_out)  # as saved: embedding tables rounded to float16
    assert sum(t != "O" for sample in tags for t in sample) > 100
    served = OnnxStudent.from_path(export_onnx(folder, tmp_path / "r.onnx"))
    assert served.predict_tags(held_out) == tags


def test_output_is_one_file_with_the_student_folder_in_its_metadata(trained, exported):
    _, folder = trained
    assert sorted(p.name for p in exported.parent.iterdir()) == ["student.onnx"]
    model = onnx.load(str(exported))
    assert {p.key: p.value for p in model.metadata_props} == {k: (folder / k).read_text() for k in METADATA_KEYS} | {
        "weights_sha256": model_sha256(exported.read_bytes())}
    assert [node.op_type for node in model.graph.node].count("Gather") == 1  # all tables and hashes: one fused gather
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in model.graph.output] == ["logits"]


def test_int8_model_loads_and_predicts(trained, exported, held_out, tweets, tmp_path):
    student, folder = trained
    int8 = export_onnx(folder, tmp_path / "int8.onnx", quantize=True)
    assert int8.stat().st_size < exported.stat().st_size / 2
    served = OnnxStudent.from_path(int8)
    tags = served.predict_tags(held_out)
    assert [len(t) for t in tags] == [len(t) for t in held_out]
    assert {t for sample in tags for t in sample} <= set(student.labels)
    assert served.predict([["Obama", "in", "Paris"], []])[1] == []
    same = sum(a == b for a, b in zip(tags, student.predict_tags(held_out))) / len(held_out)
    assert same >= 0.9, f"int8 tags only {same:.0%} of the samples as fp32"
    gold = [s.tags for s in tweets["test"]]
    assert abs(corpus_f1(gold, tags) - corpus_f1(gold, student.predict_tags(held_out))) < 0.05


def test_bad_paths_get_clear_errors(trained, exported, tmp_path):
    _, folder = trained
    with pytest.raises(FileNotFoundError, match="missing.onnx: no such ONNX file"):
        OnnxStudent.from_path(tmp_path / "missing.onnx")
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(ValueError, match="text.onnx: not a readable ONNX model"):
        OnnxStudent.from_path(tmp_path / "text.onnx")
    bare = onnx.load(str(exported))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ValueError, match="bare.onnx: no config.json, vocab.json, labels.json"):
        OnnxStudent.from_path(tmp_path / "bare.onnx")
    with pytest.raises(FileNotFoundError, match="no-student: no such student folder"):
        export_onnx(tmp_path / "no-student", tmp_path / "out.onnx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no config.json"):
        export_onnx(tmp_path / "empty", tmp_path / "out.onnx")
    (tmp_path / "half").mkdir()
    for name in ("config.json", "model.safetensors", "labels.json"):  # vocab.json missing
        (tmp_path / "half" / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(FileNotFoundError, match="no vocab.json"):
        export_onnx(tmp_path / "half", tmp_path / "out.onnx")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        export_onnx(folder, tmp_path)
    assert not (tmp_path / "out.onnx").exists()


def test_compare_runtimes_reports_agreement_and_f1(trained, held_out, tweets):
    _, folder = trained
    threads = torch.get_num_threads()
    result = compare_runtimes(folder, held_out, batch_size=16, repeats=1, gold_tags=[s.tags for s in tweets["test"]],
                              threads=1)
    assert torch.get_num_threads() == threads
    rows = result["runtimes"]
    assert set(rows) == {"torch", "onnx_fp32", "onnx_int8"}
    assert rows["onnx_fp32"]["same_tags_as_torch"] == 1.0 and rows["onnx_fp32"]["f1"] == rows["torch"]["f1"]
    assert rows["torch"]["speed_over_torch"] == 1.0
    words = sum(len(t) for t in held_out)
    for row in rows.values():
        assert row["words_per_s"] == pytest.approx(row["sentences_per_s"] * words / len(held_out))
    assert result["int8_f1_drop_points"] == pytest.approx(100 * (rows["onnx_fp32"]["f1"] - rows["onnx_int8"]["f1"]))


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime"])
def test_missing_serve_extra_says_how_to_install_it(trained, exported, tmp_path, monkeypatch, missing):
    "Without the optional `serve` extra, exporting and loading say which package is missing and how to get it."
    _, folder = trained
    for name in {missing} | {m for m in sys.modules if m.startswith(missing + ".")}:
        monkeypatch.setitem(sys.modules, name, None)  # imports of it now fail, as when it is not installed
    hint = rf"{missing}(\.quantization)? is not installed: install the serving extra, pip install 'cascade_distill\[serve\]'"
    with pytest.raises(ImportError, match=hint):
        export_onnx(folder, tmp_path / "out.onnx", quantize=True)
    if missing == "onnxruntime":
        with pytest.raises(ImportError, match=hint):
            OnnxStudent.from_path(exported)
    assert not (tmp_path / "out.onnx").exists()


def test_cli_export_then_serve(trained, held_out, tmp_path, capsys):
    student, folder = trained
    out = tmp_path / "cli" / "student.onnx"
    assert main(["export", str(folder), str(out)]) == 0  # the format from the suffix: no flag needed
    assert f"wrote {out}" in capsys.readouterr().out
    assert OnnxStudent.from_path(out).predict_tags(held_out) == student.predict_tags(held_out)
    assert main(["export", "--onnx", str(folder), str(tmp_path / "old-style.onnx")]) == 0  # old scripts still run
    assert main(["export", str(folder), str(tmp_path / "int8.onnx"), "--int8"]) == 0
    assert (tmp_path / "int8.onnx").stat().st_size < out.stat().st_size / 2
    capsys.readouterr()
    assert main(["export", str(tmp_path / "nowhere"), str(out)]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["export", str(folder), str(tmp_path / "student.tflite")]) == 2
    assert "student.tflite: unknown export format .tflite" in capsys.readouterr().err
    assert not (tmp_path / "student.tflite").exists()
