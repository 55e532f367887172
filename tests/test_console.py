"""What a run prints: one progress bar per training stage with epochs and dev F1, the per-stage table at the end, and
no raw metric dicts, weight-loading bars or Trainer step bars."""
import pytest

from cascade_distill.cli import main


def test_run_console_is_progress_bars_and_the_table(tmp_path, tiny_checkpoint, tweets, capsys):
    files = {}
    for name, samples in tweets.items():
        files[name] = tmp_path / f"{name}.txt"
        files[name].write_text("\n\n".join("\n".join(f"{t} {g}" for t, g in zip(s.tokens, s.tags)) for s in samples)
                               + "\n")
    status = main(["run", "--train", str(files["train"]), "--dev", str(files["dev"]), "--test", str(files["test"]),
                   "--run-dir", str(tmp_path / "run"), "--checkpoint", tiny_checkpoint, "--max-epochs", "2",
                   "--student-max-epochs", "2", "--max-length", "64", "--student-width", "16"])
    captured = capsys.readouterr()
    console = captured.out + captured.err
    assert status == 0
    for bar in ("teacher 1", "teacher 2", "student, gold", "student, distill"):
        assert bar in captured.err, bar  # one bar per training run ...
    assert "dev F1" in captured.err  # ... showing dev F1
    for noise in ("'eval_loss'", "{'loss'", "Loading weights", "it/s]"):
        assert noise not in console, noise
    assert "words unknown to the tokenizer (share)" in captured.out and "phase kept" in captured.out  # the table
    assert captured.out.rstrip().splitlines()[-1].startswith("run directory:")


NOTEBOOK_RUN = '''\
from cascade_distill.data import demo_corpus
from cascade_distill.pipeline import Cascade, CascadeConfig
from cascade_distill.training import TrainConfig'''

NOTEBOOK_TRAIN = '''\
# a learning rate of 1e-12 (0 is refused): nothing is learnt, so dev F1 never improves after the first epoch, so early stopping ends every run at epoch 2 of 4
still = TrainConfig(max_epochs=4, patience=1, learning_rate=1e-12, max_length=64)
cascade = Cascade({run_dir!r}, CascadeConfig(checkpoint={checkpoint!r}, teacher1=still, teacher2=still,
                  student_training=still, student_model={{"width": 16}}), **demo_corpus(seed=0, limit=120))
cascade.run();'''


def notebook_outputs(nb) -> str:
    "Everything the notebook's cells showed, as text: streams, plain text, HTML, errors."
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            for key in ("text/plain", "text/html"):
                parts.append(str(output.get("data", {}).get(key, "")))
            parts.extend(output.get("traceback", []))
    return "\n".join(parts)


def test_notebook_output_is_one_green_bar_per_training_run(tmp_path, tiny_checkpoint):
    "A real kernel runs a cascade in a notebook: no load report, weight bars or Trainer table; green bars that say why."
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(NOTEBOOK_RUN), nbformat.v4.new_code_cell(
        NOTEBOOK_TRAIN.format(run_dir=str(tmp_path / "run"), checkpoint=str(tiny_checkpoint)))])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", store_widget_state=True,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    shown = notebook_outputs(nb)
    for noise in ("LOAD REPORT", "UNEXPECTED", "Loading weights", "Writing model shards", "Training Loss",
                  "Validation Loss", "'eval_loss'", "{'loss'"):
        assert noise not in shown, noise
    assert "[cascade] student: done" in shown  # the toolkit's own lines are there

    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    bars = [m["state"] for m in state.values() if m["model_name"] in ("FloatProgressModel", "IntProgressModel")]
    labels = [m["state"].get("value", "") for m in state.values() if m["model_name"] == "HTMLModel"]
    assert len(bars) == 4  # teacher 1, teacher 2, the student's gold and distillation phases: one bar each
    assert [bar.get("bar_style") for bar in bars] == ["success"] * 4  # green, not red (danger)
    assert all(bar["value"] == bar["max"] == 2 for bar in bars)
    labels = [label.replace("\u2007", " ") for label in labels]  # tqdm pads its HTML with figure spaces
    stopped = [label for label in labels if "stopped" in label]
    assert len(stopped) == 4 and all("stopped at epoch 2, best 1" in label for label in stopped), labels
