"""params.yaml validation: unknown keys and wrong types fail at load, naming the key."""

from __future__ import annotations

import pytest
import yaml

from densemotion.params import Params, ParamsError, load_params, parse_params

from conftest import REPO, sample_params_dict, write_params


def _repo_params() -> dict:
    return sample_params_dict()


def test_repository_params_are_valid():
    """Whatever videos and settings this repository (or a fork of it) is set to, they load."""
    load_params(REPO / "params.yaml")


def test_sample_defaults_list_the_sample_clips(tmp_path):
    p = load_params(write_params(tmp_path / "params.yaml"))
    assert set(p.data.videos) == set(p.sample.clips) and len(p.data.videos) == 6
    assert p.trajectories.tracker == "dis"


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("frames", "max_sise", 160, r"frames\.max_sise: unknown key"),
        ("frames", "jpeg_quality", "95", r"frames\.jpeg_quality: .*got '95'"),
        ("frames", "jpeg_quality", 101, r"frames\.jpeg_quality"),
        ("trajectories", "window", 8.5, r"trajectories\.window"),
        ("nonsense", None, None, r"nonsense: unknown key"),
    ],
)
def test_bad_params_name_the_key(section, key, value, message):
    raw = _repo_params()
    if key is None:
        raw[section] = {}
    else:
        raw.setdefault(section, {})[key] = value
    with pytest.raises(ParamsError, match=message):
        parse_params(raw)


def test_bad_video_names_and_empty_list():
    raw = _repo_params()
    raw["data"]["videos"] = {"a#b": "x.mp4"}
    with pytest.raises(ParamsError, match=r"  data\.videos: name .a#b. must be 1-100 letters"):
        parse_params(raw)
    raw["data"]["videos"] = {}
    with pytest.raises(ParamsError, match="empty"):
        parse_params(raw)
    raw["data"]["videos"] = {"b": "data/raw/drive/frames.zip::frames/b/frames"}  # DVC cannot depend on it
    with pytest.raises(ParamsError, match=r"data\.videos\.b: .*data/raw/drive/frames\.zip"):
        parse_params(raw)


def test_window_longer_than_min_frames_is_rejected():
    raw = _repo_params()
    raw.setdefault("trajectories", {})["window"] = 16
    with pytest.raises(ParamsError, match="min_frames"):
        parse_params(raw)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ParamsError, match="cannot read"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "p.yaml").write_text("frames: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "p.yaml")


def test_the_old_train_amp_key_still_reads_with_a_message(capsys):
    """One precision vocabulary for every stage; params.yaml files of before keep working."""
    from densemotion.params import TrainParams

    assert TrainParams.model_validate({"amp": True}).autocast == "fp16"
    assert "train.amp is now train.autocast; read amp: true as autocast: fp16" in capsys.readouterr().err
    assert TrainParams.model_validate({"amp": False}).autocast == "none"
    assert TrainParams.model_validate({"autocast": "auto"}).autocast == "auto"
    with pytest.raises(ValueError, match="both set"):
        TrainParams.model_validate({"amp": True, "autocast": "bf16"})
    with pytest.raises(ValueError, match="must be true or false"):
        TrainParams.model_validate({"amp": "yes"})
    with pytest.raises(ValueError, match="autocast"):
        TrainParams.model_validate({"autocast": "fp8"})


def test_params_yaml_is_in_the_schemas_order():
    """The repository's params.yaml and the schema (which the tests' params.yaml follows) agree:
    what experiments change first, for `dvc exp show` (tests/test_exp_show.py)."""
    assert list(yaml.safe_load((REPO / "params.yaml").read_text())) == list(Params.model_fields)
