"""The notebooks are the source: they export to exactly the committed package, their tests pass, and nbdev's docs
processing accepts them."""
import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

BIN = Path(sys.executable).parent


def _copy_project(dest: Path) -> Path:
    for name in ("settings.ini", "_quarto.yml", "setup.py", "README.md"):
        shutil.copy(REPO / name, dest / name)
    shutil.copytree(REPO / "nbs", dest / "nbs", symlinks=True)
    shutil.copytree(REPO / "cascade_distill", dest / "cascade_distill", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_nbdev_export_leaves_package_unchanged(tmp_path):
    project = _copy_project(tmp_path)
    subprocess.run([BIN / "nbdev_export"], cwd=project, check=True)
    comparison = filecmp.dircmp(REPO / "cascade_distill", project / "cascade_distill", ignore=["__pycache__"])
    assert not comparison.diff_files, f"exported modules differ from the notebooks: {comparison.diff_files}"
    assert not comparison.right_only, f"notebooks export modules that are not committed: {comparison.right_only}"


def test_notebooks_run(tmp_path):
    # the tutorial on 80 tweets, one epoch and short windows: about a minute instead of several
    tutorial = {"CASCADE_TUTORIAL_LIMIT": "80", "CASCADE_TUTORIAL_MAX_EPOCHS": "1",
                "CASCADE_TUTORIAL_MAX_LENGTH": "64", "CASCADE_TUTORIAL_RUN_DIR": str(tmp_path / "tutorial-run")}
    result = subprocess.run([BIN / "nbdev_test", "--n_workers", "1", "--timing"], cwd=REPO, capture_output=True,
                            text=True, env=dict(os.environ, **tutorial))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def test_docs_processing_accepts_notebooks(tmp_path):
    "What `nbdev_docs` does before Quarto renders: refresh the config and process every notebook's directives."
    project = _copy_project(tmp_path)
    script = ("from nbdev.quarto import refresh_quarto_yml, nbdev_sidebar\n"
              "from nbdev.serve import proc_nbs\n"
              "refresh_quarto_yml(); nbdev_sidebar(); proc_nbs(force=True, n_workers=0)\n")
    subprocess.run([sys.executable, "-c", script], cwd=project, check=True)
    processed = {p.name for p in (project / "_proc" / "nbs").glob("*.ipynb")} or \
                {p.name for p in (project / "_proc").rglob("*.ipynb")}
    expected = {p.name for p in (REPO / "nbs").glob("*.ipynb")}
    assert expected <= processed
    assert (project / "_proc" / "_quarto.yml").exists() or (project / "_proc" / "nbs" / "_quarto.yml").exists()
