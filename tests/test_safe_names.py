"""No file name ever reaches a shell: DVC runs each stage's cmd through one, so a cmd holds no
interpolated value but a video or clip name, and every name is ``[A-Za-z0-9._+-]``.

Hostile names come from hypothesis (spaces, quotes, ``$()``, backticks, ``;``, ``|``, ``#``, a
leading ``-``, unicode, very long) through ``use-videos``, and through a real ``dvc repro``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from densemotion.cli.use_videos import main as use_videos_main
from densemotion.params import MAX_NAME, NAME_PATTERN, check_stage_names, load_params
from densemotion.videolist import printable, scan_videos, set_videos, stage_name

from conftest import REPO, moving_frames, write_params
from test_e2e_dvc import BIN, built_repo, ran_stages, run  # the e2e fixtures, shared

# the characters a hostile or merely real file name holds
NASTY = list(" '\"$()`;|&#<>*?!~{}[]\\\n\t%@:=,^-+._") + ["é", "ü", "漢", "🎥", "\u200b", "\u00a0"]
name_chars = st.one_of(st.sampled_from(NASTY), st.characters(codec="utf-8", exclude_characters="/\x00"))


def file_names(max_size: int = 60) -> st.SearchStrategy[str]:
    """A file name a Linux file system accepts (no '/', no NUL, at most 255 bytes with '.mp4')."""
    return (
        st.text(name_chars, min_size=1, max_size=max_size)
        .filter(lambda n: n not in (".", "..") and not n.startswith("."))
        .filter(lambda n: len(n.encode("utf-8")) <= 250)
    )


INJECTIONS = [
    "x;touch PWNED;",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a|touch PWNED",
    "a&&touch PWNED",
    "my video",
    "it's",
    'say "hi"',
    "vidé ü",
    "#hash",
    "-rf",
    "--params=evil.yaml",
    "${x}",
    "L" * 240,
]


@given(st.text(min_size=0, max_size=400))
def test_stage_name_is_a_safe_shell_word_for_any_text(raw):
    name = stage_name(raw)
    assert NAME_PATTERN.fullmatch(name) and len(name) <= MAX_NAME, name
    assert shlex.quote(name) == name  # nothing for a shell to interpret
    check_stage_names([name], "data.videos")


def test_long_names_stay_unique_after_cutting():
    a, b = stage_name("L" * 200 + "a"), stage_name("L" * 200 + "b")
    assert a != b and len(a) == len(b) <= MAX_NAME


@pytest.mark.parametrize("name", [*INJECTIONS, "", "a b", "é", "_x", ".x", "x/y", "L" * (MAX_NAME + 1)])
def test_params_refuse_any_name_a_shell_could_read(name):
    if NAME_PATTERN.fullmatch(name) and len(name) <= MAX_NAME:
        pytest.fail(f"{name!r} is not a test of a bad name")
    with pytest.raises(ValueError, match="must be 1-100 letters, digits"):
        check_stage_names([name], "data.videos")


def test_params_refuse_names_that_differ_only_in_case():
    with pytest.raises(ValueError, match="differ only in case"):
        check_stage_names(["Clip", "clip"], "data.videos")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], max_examples=40)
@given(st.lists(file_names(), min_size=1, max_size=8, unique_by=lambda n: n.lower()))
@example(names=["Yes", "on", "null", "1e3", "0x1F"])  # YAML 1.1 would read these as bool, None, numbers
def test_use_videos_accepts_any_file_name(tmp_path_factory, names):
    """Every name gets a safe, unique entry whose path is the file's own, and params.yaml loads."""
    root = tmp_path_factory.mktemp("names")
    folder = root / "raw"
    folder.mkdir()
    for name in names:
        (folder / f"{name}.mp4").write_bytes(b"")  # scanning reads names, not contents
    odd = [n for n in names if "::" in n]  # ZIP::FOLDER's separator: skipped with a line, the rest go on
    if len(odd) == len(names):
        with pytest.raises(ValueError, match="no videos"):
            scan_videos(folder)
        return
    videos, skipped = scan_videos(folder)
    assert sorted(skipped) == sorted(f"{printable(n + '.mp4')} (its path holds '::': rename it)" for n in odd)
    assert sorted(videos.values()) == sorted(str(folder / f"{n}.mp4") for n in names if n not in odd)
    check_stage_names(list(videos), "data.videos")
    if not videos:
        return
    params = write_params(root / "params.yaml")
    set_videos(params, videos)
    assert load_params(params).data.videos == videos  # the exact paths survive params.yaml


def test_use_videos_skips_a_name_that_is_not_utf8_with_one_line(tmp_path, capsys):
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "good.mp4").write_bytes(b"")
    os.close(os.open(os.fsencode(folder) + b"/bad\xff name.mp4", os.O_CREAT | os.O_WRONLY))
    params = write_params(tmp_path / "params.yaml")
    assert use_videos_main([str(folder), "--params", str(params)]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 entries: bad\\xff name.mp4 (its name is not UTF-8: rename it)" in out
    assert load_params(params).data.videos == {"good": str(folder / "good.mp4")}


def test_dvc_yaml_commands_interpolate_only_names():
    """The one rule that keeps the shell out: a cmd's ${...} are names params.yaml restricts."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage, spec in stages.items():
        body = spec.get("do", spec)
        allowed = {"key"} if spec.get("foreach") == "${data.videos}" else set()
        if spec.get("foreach") == "${sample.clips}":
            allowed = {"item"}
        used = set(re.findall(r"\$\{([^}]*)\}", body["cmd"]))
        assert used <= allowed, f"{stage}: cmd interpolates {used - allowed}: a value no shell may see"


# --- a real dvc repro on hostile names ------------------------------------------------------------


def _hostile_repo(built_repo, tmp_path, names):
    from densemotion.video import encode_video

    repo = tmp_path / "repo"
    shutil.copytree(built_repo, repo, symlinks=True)
    raw = repo / "data" / "raw" / "w"
    raw.mkdir(parents=True)
    first = raw / f"{names[0]}.mp4"
    encode_video(first, moving_frames(16, 48, 64, seed=1), 24)
    for i, name in enumerate(names[1:], start=2):
        encode_video(raw / f"{name}.mp4", moving_frames(16, 48, 64, seed=i), 24)
    return repo


@pytest.mark.slow
@pytest.mark.e2e
def test_injection_names_create_nothing_and_run_to_evaluate(built_repo, tmp_path):
    """The reproduction of the hostile round: names that are shell commands, with spaces, quotes
    and unicode, go through use-videos and the whole `dvc repro`; no command of theirs runs."""
    repo = _hostile_repo(built_repo, tmp_path, INJECTIONS[:4] + INJECTIONS[5:9] + [INJECTIONS[10], INJECTIONS[-1]])
    run(repo, BIN / "python", "-m", "densemotion", "use-videos", "data/raw/w")
    out = run(repo, "dvc", "repro")
    assert "evaluate" in ran_stages(out.stdout)
    assert not list(tmp_path.rglob("PWNED")) and not (REPO / "PWNED").exists()
    videos = load_params(repo / "params.yaml").data.videos
    assert len(videos) == 10 and all((repo / "data" / "frames" / f"{n}.zip").is_file() for n in videos)
    assert "up to date" in run(repo, "dvc", "status").stdout


@pytest.mark.slow
@pytest.mark.e2e
@settings(max_examples=3, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(names=st.lists(file_names(40), min_size=2, max_size=5, unique_by=lambda n: stage_name(n).lower()))
def test_any_names_through_a_real_frames_stage(built_repo, tmp_path_factory, names):
    """hypothesis' names, through use-videos and a real `dvc repro frames`: every stage runs, reads
    its own video, and nothing else is made."""
    import json
    import zipfile

    tmp_path = tmp_path_factory.mktemp("anynames")
    repo = _hostile_repo(built_repo, tmp_path, names)
    before = set(os.listdir(repo))
    run(repo, BIN / "python", "-m", "densemotion", "use-videos", "data/raw/w")
    out = run(repo, "dvc", "repro", "frames")
    videos = load_params(repo / "params.yaml").data.videos
    assert {f"frames@{n}" for n in videos} <= set(ran_stages(out.stdout)), out.stdout
    for name, source in videos.items():
        meta = json.loads(zipfile.ZipFile(repo / "data" / "frames" / f"{name}.zip").read("meta.json"))
        assert meta["source"] == source and meta["frame_count"] == 16
    assert set(os.listdir(repo)) == before
