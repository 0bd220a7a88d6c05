"""``densemotion <command>``: every command is reachable, unknown ones are refused with the list."""

from __future__ import annotations

import importlib

import pytest

from densemotion.__main__ import COMMANDS, main


def test_usage_lists_every_command(capsys):
    assert main([]) == 0 and main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_module_has_a_main(name):
    assert callable(importlib.import_module(f"densemotion.cli.{COMMANDS[name][0]}").main)


def test_unknown_command_is_refused(capsys):
    assert main(["frame"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frame'" in err and "frames" in err


def test_a_command_runs_with_its_arguments(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["frames", "--help"])
    assert exit_.value.code == 0 and "--params" in capsys.readouterr().out


@pytest.mark.parametrize("switch", ["--debug", "env"])
def test_an_error_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch, switch):
    from densemotion.cli.frames import main as frames_main

    bad = tmp_path / "params.yaml"
    bad.write_text("frames: {jpeg_quality: high}\n")
    args = ["x.mp4", str(tmp_path / "x.zip"), "--params", str(bad)]
    assert frames_main(args) == 1
    plain = capsys.readouterr().err
    assert "frames.jpeg_quality" in plain and "Traceback" not in plain
    if switch == "env":
        monkeypatch.setenv("DENSEMOTION_DEBUG", "1")
    assert frames_main([*args, "--debug"] if switch == "--debug" else args) == 1
    debug = capsys.readouterr().err
    assert "Traceback (most recent call last)" in debug and "frames.jpeg_quality" in debug


def test_a_stage_run_as_a_module_names_its_command_in_errors(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "params.yaml"
    bad.write_text("frames: {jpeg_quality: high}\n")
    out = subprocess.run([sys.executable, "-m", "densemotion.cli.frames", "x.mp4", "y.zip", "--params", str(bad)],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 1 and out.stderr.startswith("densemotion frames: error:"), out.stderr
