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


# ---- files: errors that name the file and what to do, and a run that never stays stuck (issue 19)
import contextlib  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from cascade_distill.cli import main  # noqa: E402
from cascade_distill.pipeline import Cascade  # noqa: E402
from cascade_distill.store import RunDir, atomic_dir, atomic_write_text  # noqa: E402
from cascade_distill.training import last_complete_checkpoint  # noqa: E402


def test_a_run_dir_that_is_a_file_is_refused_by_name(tmp_path):
    file = tmp_path / "run"
    file.write_text("not a folder")
    with pytest.raises(ValueError, match=f"{file} is a file, not a run directory"):
        RunDir(file)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert main(["demo", "--run-dir", str(file)]) == 2
    assert f"{file} is a file, not a run directory" in stderr.getvalue()


@pytest.fixture
def cascade_with_teacher(tmp_path, tiny_checkpoint, tweets):
    "A run directory whose teacher 1 folder holds a copy of the tiny checkpoint (as a finished stage would)."
    cascade = Cascade(tmp_path / "run", train=tweets["train"][:20], dev=tweets["dev"][:10])
    model = cascade.run_dir / "teacher1" / "model"
    shutil.copytree(tiny_checkpoint, model)
    return cascade, model


def test_a_truncated_model_names_the_file_and_what_to_do(cascade_with_teacher):
    cascade, model = cascade_with_teacher
    os.truncate(model / "model.safetensors", (model / "model.safetensors").stat().st_size // 2)
    with pytest.raises(ValueError, match=rf"{model}: cannot load teacher 1: model.safetensors: \d+ bytes where its "
                                         rf"header describes \d+: cut short; remove {model}"):
        cascade.load_teacher1()


def test_a_config_that_does_not_fit_the_weights_names_the_folder(cascade_with_teacher):
    cascade, model = cascade_with_teacher
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_size=48, intermediate_size=96)
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"{model}: cannot load teacher 1 \(RuntimeError: .*config does not match"):
        cascade.load_teacher1()


def test_a_broken_run_config_names_the_file_to_remove(tmp_path, tweets):
    Cascade(tmp_path / "run", train=tweets["train"][:20], dev=tweets["dev"][:10])
    config = tmp_path / "run" / "config.json"
    config.write_text(config.read_text()[:40])  # cut short
    with pytest.raises(ValueError, match=f"remove {config} to start this run over"):
        Cascade(tmp_path / "run")


def test_a_broken_manifest_is_moved_aside_and_the_stages_recompute(tmp_path):
    run = RunDir(tmp_path / "run")
    atomic_write_text(run / "a.txt", "x")
    run.record("split", "fp", ["a.txt"], {})
    (run / "manifest.json").write_text('{"split": {"fingerprint": "fp", "fil')  # cut short
    with pytest.warns(UserWarning, match="manifest.json: cannot read the manifest"):
        assert not run.finished("split", "fp")  # a reader: nothing counts as finished, nothing is changed
    assert (run / "manifest.json").exists()
    with pytest.warns(UserWarning, match="moved aside to manifest.json.broken-"):
        with run.locked():  # the next writer sets it aside and starts a new one
            run.record("split", "fp", ["a.txt"], {})
    assert run.finished("split", "fp") and list(run.path.glob("manifest.json.broken-*"))


def test_a_truncated_checkpoint_is_not_resumed_from(tmp_path, tiny_checkpoint):
    "A checkpoint whose weights were cut short (its trainer_state.json whole) is removed; the one before is resumed."
    for step in (10, 20):
        shutil.copytree(tiny_checkpoint, tmp_path / f"checkpoint-{step}")
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    os.truncate(tmp_path / "checkpoint-20" / "model.safetensors", 1000)
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert not (tmp_path / "checkpoint-20").exists()


# ---- leaks and integrity
def test_scratch_of_a_finished_stage_is_removed_on_resume(tmp_path):
    "A kill between recording a stage and deleting its scratch left `<stage>/work`; the next writer removes it."
    run = RunDir(tmp_path / "run")
    work = run.work_dir("student", "fp-student")
    (work / "checkpoint-1.bin").write_bytes(b"x" * 1000)
    atomic_write_text(run / "student.txt", "model")
    run.record("student", "fp-student", ["student.txt"], {})
    unfinished = run.work_dir("teacher2", "fp-teacher2")  # a stage that has not finished: its checkpoints resume it
    with RunDir(run.path).locked():
        pass
    assert not work.exists() and unfinished.is_dir()


READER = """
import os, sys, time
folder, end, missing, reads = sys.argv[1], float(sys.argv[2]), 0, 0
while time.time() < end:
    reads += 1
    if not os.path.exists(os.path.join(folder, "weights.bin")):
        missing += 1
print(reads, missing)
"""


def test_a_reader_never_catches_a_folder_between_old_and_new(tmp_path):
    "Republishing a folder with `atomic_dir` while another process reads it: the reader always finds a whole folder."
    folder = tmp_path / "student"
    with atomic_dir(folder) as tmp:
        (tmp / "weights.bin").write_bytes(b"0")
    reader = subprocess.Popen([sys.executable, "-c", READER, str(folder), str(time.time() + 4)],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    published = 0
    while reader.poll() is None:
        with atomic_dir(folder) as tmp:
            (tmp / "weights.bin").write_bytes(str(published).encode())
        published += 1
    reads, missing = map(int, reader.communicate()[0].split())
    assert published > 50 and reads > 1000
    assert missing == 0, f"the reader found no folder {missing} times in {reads} reads ({published} publications)"


def test_every_written_file_gets_the_permissions_open_gives(tmp_path):
    "Some writers (safetensors, via save_pretrained) make owner-only files; published files follow the umask."
    from safetensors.numpy import save_file
    import numpy as np
    mask = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "model") as tmp:
            save_file({"w": np.zeros(3, np.float32)}, tmp / "model.safetensors")
            os.chmod(tmp / "model.safetensors", 0o600)  # as transformers' save_pretrained leaves it
            (tmp / "config.json").write_text("{}")
        atomic_write_text(tmp_path / "notes.txt", "x")
    finally:
        os.umask(mask)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in [*(tmp_path / "model").iterdir(), tmp_path / "notes.txt"]}
    assert modes == {"model.safetensors": "0o644", "config.json": "0o644", "notes.txt": "0o644"}, modes


# ---- cost: one very long sample does not blow up the student's training batches
def test_a_very_long_sample_is_cut_into_training_windows(tweets, labels):
    "A 20,000-word sentence becomes windows of at most STUDENT_MAX_WORDS: a batch is padded to ≤ that many words."
    from cascade_distill.student import STUDENT_MAX_WORDS, StudentCollator, StudentDataset, WordFeaturizer, new_student
    import numpy as np
    long = tweets["train"][0].__class__("long", ["word"] * 20_000, ["O"] * 19_998 + ["B-person", "I-person"])
    train = tweets["train"][:31] + [long]
    _, featurizer = new_student(train, labels)
    soft = [np.zeros((len(s.tokens), len(labels)), np.float32) for s in train]
    dataset = StudentDataset(featurizer, train, labels, soft, max_words=STUDENT_MAX_WORDS)
    assert max(len(item["labels"]) for item in dataset) <= STUDENT_MAX_WORDS
    assert sum(len(item["labels"]) for item in dataset) == sum(len(s.tokens) for s in train)  # every word kept
    batch = StudentCollator()([dataset[i] for i in range(32)])
    assert batch["input_ids"].shape[1] <= STUDENT_MAX_WORDS
    whole = StudentDataset(featurizer, train, labels)  # evaluation sets stay whole
    assert len(whole) == 32 and len(whole[31]["labels"]) == 20_000


# ---- requirements: ranges in settings.ini, the exact set in constraints.txt
def _requirements() -> list[str]:
    import configparser
    import shlex
    from pathlib import Path
    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parents[1] / "settings.ini")
    return shlex.split(config["DEFAULT"]["requirements"])


def test_requirements_are_ranges_the_constraints_satisfy():
    "Each runtime requirement is a range (torch excepted: a range would fetch a CUDA build); constraints.txt pins a "
    "version inside every range, and every package the code imports is declared."
    from pathlib import Path
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    lines = (Path(__file__).resolve().parents[1] / "constraints.txt").read_text().splitlines()
    pins = {canonicalize_name(line.split("==")[0]): line.split("==")[1] for line in lines if "==" in line}
    requirements = [Requirement(r) for r in _requirements()]
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if name == "torch":
            assert str(requirement.specifier) == "==2.13.0"
            continue
        assert any(spec.operator == "<" for spec in requirement.specifier), f"{requirement}: no upper bound"
        assert requirement.specifier.contains(pins[name]), f"{requirement}: constraints.txt pins {pins[name]}"
    declared = {canonicalize_name(r.name) for r in requirements}
    assert {"tqdm", "filelock", "safetensors", "pyarrow", "fastcore"} <= declared


def test_a_fresh_install_with_the_constraints_resolves(tmp_path):
    "What CI runs resolves from the package index without conflicts (a dry run: nothing is installed)."
    import json
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", str(report), "torch==2.13.0", "-c", "constraints.txt", "-e", ".[dev]"],
                          cwd=repo, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    chosen = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in json.loads(report.read_text())["install"]}
    pins = dict(line.split("==") for line in (repo / "constraints.txt").read_text().splitlines() if "==" in line)
    assert chosen["transformers"] == pins["transformers"] and chosen["filelock"] == pins["filelock"]
