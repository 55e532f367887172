"""What a run prints: one progress bar per training stage with epochs and dev F1, the per-stage table at the end, and
no raw metric dicts, weight-loading bars or Trainer step bars."""
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
