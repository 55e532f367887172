"""The threshold explorer in a real browser: JupyterLab serves a notebook that scores a tiny run and shows
`ThresholdExplorer`; headless Chromium (driven by Playwright) runs the notebook, moves the slider with the keyboard and
checks that the counts on the page follow, exactly as the pipeline's split would count them."""
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pandas as pd
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
BIN = Path(sys.executable).parent
# "target 74 (61.7%) · unqualified 46 (38.3%) of 120 samples at f1 ≥ 0.90 — not applied (no split written yet)"
COUNTS = re.compile(r"target ([\d,]+) \(([\d.]+)%\) · unqualified ([\d,]+) \(([\d.]+)%\) of ([\d,]+) samples "
                    r"at (\w+) ≥ ([\d.]+)")

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; see .ci/browser-deps.sh)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the playwright package is missing (pip install playwright)")

NOTEBOOK_CELLS = [
    """\
import numpy as np
import transformers
from cascade_distill.data import demo_corpus
from cascade_distill.encode import make_tiny_checkpoint
from cascade_distill.pipeline import Cascade, CascadeConfig
from cascade_distill.training import TrainConfig
from cascade_distill.widgets import ThresholdExplorer""",
    """\
%%capture
transformers.logging.set_verbosity_error()
demo = demo_corpus(limit=200)
checkpoint = make_tiny_checkpoint([s.tokens for s in demo["train"]], "run/tiny-bert", max_position=128)
quick = TrainConfig(max_epochs=1, patience=1, learning_rate=5e-3, max_length=64, progress=False)
cascade = Cascade("run/cascade", CascadeConfig(checkpoint=checkpoint, teacher1=quick, teacher2=quick, student_training=quick),
                  **demo)
cascade.run_score();""",
    """\
explorer = ThresholdExplorer(cascade)
explorer""",
]


def parse_counts(text: str) -> dict:
    "The numbers of the explorer's counts line."
    match = COUNTS.search(text)
    assert match, f"the counts line does not have the explorer's format: {text!r}"
    target, target_pct, unqualified, unqualified_pct, total, score, threshold = match.groups()
    number = lambda s: int(s.replace(",", ""))
    return {"target": number(target), "target_pct": float(target_pct), "unqualified": number(unqualified),
            "unqualified_pct": float(unqualified_pct), "total": number(total), "score": score,
            "threshold": float(threshold)}


def expected_counts(scores: pd.DataFrame, score: str, threshold: float) -> dict:
    "What the pipeline's split rule (score >= threshold is target) gives."
    target = int((scores[f"t1_{score}"] >= threshold).sum())
    return {"target": target, "unqualified": len(scores) - target, "total": len(scores)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(path: Path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in NOTEBOOK_CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)


def start_lab(root: Path, home: Path, port: int, token: str, log_file) -> subprocess.Popen:
    "JupyterLab on 127.0.0.1:`port` with fresh config/data/runtime dirs (labextensions still come from the venv)."
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               JUPYTER_PLATFORM_DIRS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    # the news toast would ask a question on first start; nothing may reach the network
    labconfig = home / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(
        '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}')
    command = [str(BIN / "jupyter"), "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=None"]
    return subprocess.Popen(command, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def wait_for_server(server: subprocess.Popen, url: str, log_path: Path, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited with {server.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"jupyter lab did not answer within {timeout} s:\n{log_path.read_text()[-4000:]}")


def stop(server: subprocess.Popen):
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=15)


def test_threshold_explorer_in_jupyterlab(tmp_path):
    root, home = tmp_path / "notebooks", tmp_path / "jupyter"
    root.mkdir()
    home.mkdir()
    write_notebook(root / "test.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    log_path = tmp_path / "jupyter.log"
    screenshot_dir = Path(os.environ.get("CASCADE_SCREENSHOT_DIR") or tmp_path)
    screenshot_dir.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{port}"

    with open(log_path, "wb") as log_file:
        server = start_lab(root, home, port, token, log_file)
        try:
            wait_for_server(server, f"{base}/api/status?token={token}", log_path)
            with sync_api.sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1500, "height": 1300})
                page.set_default_timeout(60_000)
                try:
                    drive_explorer(page, f"{base}/lab/tree/test.ipynb?token={token}", root, screenshot_dir)
                except Exception:
                    page.screenshot(path=str(screenshot_dir / "browser_threshold_failure.png"))
                    raise
                finally:
                    browser.close()
        except Exception as err:
            raise AssertionError(f"{err}\n--- jupyter lab log ---\n{log_path.read_text()[-3000:]}") from err
        finally:
            stop(server)


def run_all_cells(page, idle, tries: int = 3):
    "Run > Run All Cells once the kernel is idle; again if no cell got queued (a click before the session is ready)."
    first_prompt = page.locator(".jp-Cell .jp-InputPrompt").first
    for _ in range(tries):
        idle.wait_for(timeout=120_000)
        page.get_by_text(re.compile(r"\| Idle$")).first.wait_for(timeout=60_000)  # the status bar agrees
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item", has_text=re.compile(r"^Run All Cells")).click()
        try:
            page.wait_for_function("el => /\\[(\\*|\\d+)\\]/.test(el.innerText)", arg=first_prompt.element_handle(),
                                   timeout=20_000)
            return
        except sync_api.TimeoutError:
            page.keyboard.press("Escape")
    pytest.fail(f"Run All Cells queued nothing in {tries} tries")


def drive_explorer(page, url: str, root: Path, screenshot_dir: Path):
    page.goto(url)
    idle = page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')
    run_all_cells(page, idle)

    counts_line = page.locator(".cd-counts")
    counts_line.wait_for(timeout=300_000)  # tiny model trained, scores written, widget rendered
    handle = page.locator(".widget-slider .noUi-handle")
    handle.wait_for()
    # the histogram's threshold line (a vertical path has an empty box, so Playwright never deems it visible)
    page.locator(".jp-OutputArea .js-plotly-plot .shapelayer path").first.wait_for(state="attached")
    idle.wait_for(timeout=60_000)

    scores = pd.read_parquet(root / "run" / "cascade" / "scores.parquet")
    before = parse_counts(counts_line.inner_text())
    assert (before["score"], before["threshold"]) == ("f1", 0.9)  # the run's defaults
    assert {k: before[k] for k in ("target", "unqualified", "total")} == expected_counts(scores, "f1", 0.9)
    assert before["unqualified"] > 0, "every sample scores >= 0.9: moving the slider down could not change counts"
    line_before = page.locator(".js-plotly-plot .shapelayer path").first.get_attribute("d")

    def counts_after(key: str, times: int = 1) -> dict:
        old = counts_line.inner_text()
        handle.focus()
        for _ in range(times):
            handle.press(key)
        page.wait_for_function("old => document.querySelector('.cd-counts').innerText !== old", arg=old,
                               timeout=30_000)
        readout = page.locator(".widget-slider .widget-readout")
        # keys may arrive in several kernel round trips: wait until the line shows the slider's value
        page.wait_for_function(
            "() => { const r = document.querySelector('.widget-slider .widget-readout');"
            " const c = document.querySelector('.cd-counts');"
            " return r && c && c.innerText.includes('≥ ' + (r.innerText || r.value).trim()); }", timeout=30_000)
        shown = parse_counts(counts_line.inner_text())
        assert f"{shown['threshold']:.2f}" == (readout.inner_text() or readout.input_value()).strip()
        return shown

    at_zero = counts_after("Home")  # slider to the left end: every sample is target
    assert at_zero["threshold"] == 0.0
    assert (at_zero["target"], at_zero["unqualified"], at_zero["target_pct"]) == (len(scores), 0, 100.0)
    assert at_zero["target"] != before["target"]

    moved = counts_after("ArrowRight", times=3)
    assert moved["threshold"] == 0.03
    assert {k: moved[k] for k in ("target", "unqualified", "total")} == expected_counts(scores, "f1", 0.03)
    assert abs(moved["target_pct"] - 100 * moved["target"] / moved["total"]) < 0.051

    page.wait_for_function("old => document.querySelector('.js-plotly-plot .shapelayer path')"
                           ".getAttribute('d') !== old", arg=line_before, timeout=30_000)  # the line moved
    assert "not applied" in counts_line.inner_text()  # a slider move writes nothing
    assert not (root / "run" / "cascade" / "split.parquet").exists()

    page.mouse.move(0, 0)  # no hover label or plotly toolbar in the picture
    output = page.locator(".jp-OutputArea-output", has=page.locator(".cd-counts"))
    output.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)  # let plotly finish repainting the bars
    page.screenshot(path=str(screenshot_dir / "browser_threshold.png"),
                    clip=visible_part(output.bounding_box(), page.locator(".jp-NotebookPanel-notebook").bounding_box()))
    page.screenshot(path=str(screenshot_dir / "browser_threshold_page.png"))


def visible_part(box: dict, viewport: dict) -> dict:
    "The part of `box` inside `viewport` (both Playwright bounding boxes): the widget as it shows in the notebook."
    left, top = max(box["x"], viewport["x"]), max(box["y"], viewport["y"])
    right = min(box["x"] + box["width"], viewport["x"] + viewport["width"])
    bottom = min(box["y"] + box["height"], viewport["y"] + viewport["height"])
    return {"x": left, "y": top, "width": right - left, "height": bottom - top}
