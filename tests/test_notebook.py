"""notebooks/colab.ipynb, the path a Colab user follows, executed top to bottom on the CPU, offline.

The test changes only the parameters cell: a local folder stands for the mounted Drive (holding a
zip of frames in the Drive layout), a git repository copied from this working tree for GitLab, a
tiny experiment for the GPU one. A CLI change that breaks a cell fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import moving_frames
from test_e2e_dvc import _copy_tree, run

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "colab.ipynb"
TINY = ("-S train.epochs=1 -S train.batch_size=2 -S model.input_scale=1 -S train.val_videos=1 "
        "-S train.test_videos=1 -S frames.min_frames=8")  # fmt: skip


def _drive(folder: Path) -> None:
    """A Drive folder with the users' frames zip: frames/<video>/frames/*.jpg."""
    from densemotion.frames.store import encode_jpeg

    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "frames.zip", "w") as z:
        for v in range(3):
            for i, frame in enumerate(moving_frames(16, 48, 64, seed=v)):
                z.writestr(f"frames/clip{v}/frames/{i:05d}.jpg", encode_jpeg(frame, 90))


def _run_notebook(nbformat, nbclient, tmp_path: Path, origin: Path, drive: Path, project: Path):
    """Execute the notebook with the test's parameters; returns the executed notebook."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1
    params[0].source = "\n".join([
        f"REPO_URL = {str(origin)!r}", "BRANCH = 'colab'", f"DRIVE = {str(drive)!r}", f"PROJECT = {str(project)!r}",
        "FIRST_TIME = 'auto'", f"FRAMES_ZIP = {str(drive / 'frames.zip')!r}", f"EXPERIMENT = {TINY!r}",
        "INSTALL = 'true'  # the test's venv has densemotion already", "GIT_NAME, GIT_EMAIL = 'T', 't@example.org'",
        "MOUNT_DRIVE = False",
    ])  # fmt: skip
    nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    return nb


def _printed(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_colab_notebook_runs_top_to_bottom_and_again_on_a_fresh_vm(tmp_path, monkeypatch):
    """The users' main workflow: a first session, then a disconnect (the Colab disk, and so the
    project folder, gone; Drive and the git remote kept), then Run all again, changing nothing."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    origin = tmp_path / "gitlab" / "densemotion"
    origin.mkdir(parents=True)
    _copy_tree(origin)
    run(origin, "git", "init", "-q", "-b", "main")
    run(origin, "git", "add", "-A")
    run(origin, "git", "commit", "-qm", "as pushed to GitLab")
    run(origin, "git", "config", "receive.denyCurrentBranch", "ignore")
    drive = tmp_path / "drive"
    _drive(drive)
    project = tmp_path / "content" / "densemotion"
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(project / "src"))  # the clone's code, as installed on Colab
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = _run_notebook(nbformat, nbclient, tmp_path, origin, drive, project)

    details = json.loads((project / "metrics" / "evaluate" / "details.json").read_text())
    assert details["epochs"] == 1 and details["videos"] == 1
    assert (drive / "densemotion" / "dvcstore").is_dir() and any((drive / "densemotion" / "dvcstore").rglob("*"))
    assert (project / "data" / "work").is_symlink()
    assert "Running stage 'train'" in _printed(nb)  # sh() shows the commands' output in the cell
    assert "3 of 3 videos tracked and pushed" in _printed(nb)  # each pushed as it finished
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in shown)  # pictures and curves inline
    (results,) = [c for c in nb.cells if c.cell_type == "code" and "plots/metrics" in c.source]
    pngs = [o["data"]["image/png"] for o in results.outputs if "image/png" in o.get("data", {})]
    pictures = len(list((project / "metrics" / "evaluate" / "pictures").glob("*.png")))
    assert len(pngs) == min(4, pictures) + 1  # the training curves too, under a non-interactive backend
    assert run(origin, "git", "for-each-ref", "refs/exps").stdout.strip(), "the experiment was not pushed"
    assert run(origin, "git", "rev-parse", "--verify", "colab").returncode == 0  # the branch the next one needs
    first_summary = (project / "metrics" / "evaluate" / "summary.json").read_bytes()

    shutil.rmtree(tmp_path / "content")  # the disconnect: a new VM has an empty disk
    again = _printed(_run_notebook(nbformat, nbclient, tmp_path, origin, drive, project))
    assert "Frames from Drive" not in again and "dvc pull" in again  # found the branch: no second import
    assert "Running stage" not in again, again  # nothing finished runs again
    assert (project / "metrics" / "evaluate" / "summary.json").read_bytes() == first_summary
    assert "up to date" in run(project, "dvc", "status").stdout
