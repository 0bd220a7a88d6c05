"""Data moves by `dvc push` and `dvc pull`, for real: a local folder, OpenSSH on loopback, S3 (moto).

Each round trip pushes the tiny sample pipeline's outputs, wipes the cache and the workspace
outputs, pulls, and checks `dvc status` clean, `dvc status -c` in sync and every file's bytes.
The remote is configured by the docs' own recipe (docs/remotes.md: the fenced block that starts
with ``# recipe: NAME``), run with shell variables standing for the user's values, so the docs
say exactly what the tests run.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO
from test_e2e_dvc import _env, built_repo, ran_stages, repo, run  # the e2e fixtures, shared

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

OUTPUT_DIRS = ("data/sample/videos", "data/sample/truth", "data/frames", "data/trajectories", "models")


def recipe(name: str) -> str:
    """docs/remotes.md's recipe block ``name`` (a fenced bash block whose first line is ``# recipe: name``)."""
    blocks = re.findall(r"```bash\n# recipe: (\S+)\n(.*?)```", (REPO / "docs" / "remotes.md").read_text(), re.S)
    found = [body for block_name, body in blocks if block_name == name]
    assert found, f"docs/remotes.md has no recipe {name!r}"
    return found[0]


def run_recipe(repo: Path, name: str, **variables: str) -> subprocess.CompletedProcess:
    env = {**_env(repo), **variables}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", recipe(name)], cwd=repo, env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, f"recipe {name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def outputs(repo: Path) -> dict[str, str]:
    """sha256 of every file DVC tracks in the workspace (outputs of the pipeline)."""
    found = {}
    for folder in OUTPUT_DIRS:
        for path in sorted((repo / folder).rglob("*")):
            if path.is_file() and path.name != ".gitignore" and not path.name.endswith((".md", ".dvc")):
                found[str(path.relative_to(repo))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def wipe(repo: Path) -> None:
    """The cache and every output gone, as on a new machine (git-tracked files stay)."""
    shutil.rmtree(repo / ".dvc" / "cache", ignore_errors=True)
    for rel in outputs(repo):
        (repo / rel).unlink()
    for folder in ("data/trajectories",):
        for store in (repo / folder).iterdir():
            if store.is_dir():
                shutil.rmtree(store)


def round_trip(repo: Path, remote: str) -> None:
    before = outputs(repo)
    assert len(before) > 20
    run(repo, "dvc", "push", "-r", remote)
    wipe(repo)
    assert outputs(repo) == {}
    run(repo, "dvc", "pull", "-r", remote)
    assert outputs(repo) == before
    assert "up to date" in run(repo, "dvc", "status").stdout
    assert "in sync" in run(repo, "dvc", "status", "-c", "-r", remote).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port}")


# --- (a) a local folder (the Drive folder on Colab is one) -------------------------------------


def test_local_folder_round_trip(repo, tmp_path):
    run_recipe(repo, "drive-folder", DRIVE_REMOTE=str(tmp_path / "drive" / "densemotion" / "dvcstore"))
    round_trip(repo, "drive")


# --- (b) OpenSSH on loopback --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on 127.0.0.1 with its own host key, accepting one throw-away user key."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(binary).exists():
        pytest.skip("no OpenSSH server here (scripts/dev.sh test installs openssh-server where apt-get can)")
    root = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / key)], check=True)
    (root / "authorized_keys").write_text((root / "user_key.pub").read_text())
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True) if os.geteuid() == 0 else None
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port, proc, "sshd")
        yield {"port": str(port), "key": str(root / "user_key"), "user": getpass.getuser(), "root": root,
               "proc": proc}  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _ssh_vars(sshd: dict, path: Path) -> dict[str, str]:
    return {"SSH_USER": sshd["user"], "SSH_HOST": "127.0.0.1", "SSH_PORT": sshd["port"], "SSH_PATH": str(path),
            "SSH_KEY": sshd["key"]}  # fmt: skip


def test_ssh_round_trip_and_a_fresh_clone_pulls_then_runs_nothing(repo, sshd, tmp_path):
    store = tmp_path / "lab" / "dvcstore"
    run_recipe(repo, "ssh", **_ssh_vars(sshd, store))
    round_trip(repo, "lab")
    # the run cache too: a fresh clone reuses every stage's result instead of recomputing it
    run(repo, "dvc", "push", "-r", "lab", "--run-cache")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "remote", "--allow-empty")
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    run_recipe(clone, "ssh", **_ssh_vars(sshd, store))
    run(clone, "dvc", "pull")
    again = run(clone, "dvc", "repro")
    assert ran_stages(again.stdout) == [], again.stdout
    assert "up to date" in run(clone, "dvc", "status").stdout
    fresh = tmp_path / "fresh"  # with nothing pulled first: repro --pull fetches instead of running
    run(tmp_path, "git", "clone", "-q", str(repo), str(fresh))
    run_recipe(fresh, "ssh", **_ssh_vars(sshd, store))
    pulled = run(fresh, "dvc", "repro", "--pull")
    assert ran_stages(pulled.stdout) == [], pulled.stdout
    assert "up to date" in run(fresh, "dvc", "status").stdout


def test_interrupted_ssh_push_completes_on_the_next_push(repo, sshd, tmp_path):
    store = tmp_path / "lab" / "dvcstore"
    run_recipe(repo, "ssh", **_ssh_vars(sshd, store))
    cache_before = {p: p.stat().st_size for p in (repo / ".dvc" / "cache").rglob("*") if p.is_file()}
    proc = subprocess.Popen(["dvc", "push", "-r", "lab", "-j", "1"], cwd=repo, env=_env(repo), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while (not store.exists() or sum(1 for _ in store.rglob("*")) < 5) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "in sync" not in run(repo, "dvc", "status", "-c", "-r", "lab", check=False).stdout  # half pushed
    run(repo, "dvc", "push", "-r", "lab")
    assert "in sync" in run(repo, "dvc", "status", "-c", "-r", "lab").stdout
    assert {p: p.stat().st_size for p in (repo / ".dvc" / "cache").rglob("*") if p.is_file()} == cache_before


@pytest.mark.parametrize("fault", ["server down", "wrong key", "path is a file"])
def test_ssh_faults_are_clear_and_lose_nothing(repo, sshd, tmp_path, fault):
    variables = _ssh_vars(sshd, tmp_path / "lab" / "dvcstore")
    if fault == "server down":
        variables["SSH_PORT"] = str(free_port())
    elif fault == "wrong key":
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
        variables["SSH_KEY"] = str(tmp_path / "other")
    else:
        (tmp_path / "lab").write_text("a file where the store should be")
    run_recipe(repo, "ssh", **variables)
    before = outputs(repo)
    pushed = run(repo, "dvc", "push", "-r", "lab", check=False)
    assert pushed.returncode != 0
    message = pushed.stdout + pushed.stderr
    assert "Traceback" not in message and "ERROR" in message, message
    assert outputs(repo) == before and "up to date" in run(repo, "dvc", "status").stdout


# --- (c) S3, through moto's server (an emulator of the S3 API, the one DVC's own tests use) -------


@pytest.fixture(scope="module")
def s3_server():
    pytest.importorskip("moto", reason="moto (pip install 'moto[server]') emulates S3 for this test")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_s3_round_trip(repo, s3_server):
    import boto3

    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket="densemotion")  # fmt: skip
    run_recipe(repo, "s3", S3_URL="s3://densemotion/dvcstore", S3_ENDPOINT=s3_server,
               AWS_KEY_ID="testing", AWS_SECRET="testing")  # fmt: skip
    assert "testing" not in (repo / ".dvc" / "config").read_text()  # credentials only in config.local
    round_trip(repo, "s3")


def test_pull_from_a_remote_missing_objects_names_them_and_keeps_the_rest(repo, tmp_path):
    run_recipe(repo, "drive-folder", DRIVE_REMOTE=str(tmp_path / "drive"))
    run(repo, "dvc", "push", "-r", "drive")
    objects = sorted(p for p in (tmp_path / "drive").rglob("*") if p.is_file())
    for lost in objects[::7]:
        lost.unlink()
    wipe(repo)
    pulled = run(repo, "dvc", "pull", "-r", "drive", check=False)
    message = pulled.stdout + pulled.stderr
    assert pulled.returncode != 0 and "Traceback" not in message
    assert "missing" in message.lower() or "failed" in message.lower(), message
    fetched = [p for p in (repo / ".dvc" / "cache").rglob("*") if p.is_file()]
    assert fetched  # what the remote has is fetched; `dvc checkout` then restores those outputs
    run(repo, "dvc", "checkout", check=False)
    assert len(outputs(repo)) > 0
