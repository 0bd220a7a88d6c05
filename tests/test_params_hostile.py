"""params.yaml from outside (a fork, a teammate, ``dvc exp run -S``): any document either loads or
fails as one ParamsError line naming the file, never with another exception (property-based)."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from densemotion.params import ParamsError, load_params
from densemotion.videolist import set_videos

from conftest import sample_params_dict

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)
FIXTURE = [HealthCheck.function_scoped_fixture]


def _fails_as_one_line(path, check=load_params) -> None:
    """``check(path)`` succeeds, or raises a ValueError (ParamsError, set_videos' own refusals)
    whose first line names the file; any other exception fails the test."""
    message = ""
    try:
        check(path)
    except ValueError as err:
        message = str(err)
    assert not message or str(path) in message.splitlines()[0], message


@settings(suppress_health_check=FIXTURE)
@given(st.text(max_size=300))
def test_any_text_loads_or_is_one_error_naming_the_file(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    _fails_as_one_line(path)


@settings(suppress_health_check=FIXTURE)
@given(st.binary(max_size=200))
def test_any_bytes_load_or_are_one_error_naming_the_file(tmp_path, data):
    path = tmp_path / "params.yaml"
    path.write_bytes(data)
    _fails_as_one_line(path)


@st.composite
def mutated_params(draw) -> dict:
    """The sample's params with one to three keys, at any depth, replaced or added with any value."""
    raw = copy.deepcopy(sample_params_dict())
    for _ in range(draw(st.integers(1, 3))):
        node = raw
        while isinstance(node, dict) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node, key=str)))
            if not isinstance(node[key], dict):
                break
            node = node[key]
        if isinstance(node, dict):
            key = draw(st.one_of(st.sampled_from(sorted(node, key=str) or ["x"]), st.text(max_size=12)))
            node[key] = draw(VALUES)
    return raw


@settings(suppress_health_check=FIXTURE)
@given(mutated_params())
def test_any_mutated_params_load_or_are_one_error(tmp_path, raw):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    _fails_as_one_line(path)
    _fails_as_one_line(path, lambda p: set_videos(p, {"a": "x.mp4"}))  # use-videos' own reader


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("? [a, b]\n: 1\n", r"a key must be a plain value, not a list \(line 1, column 3\)"),
        ("[" * 50_000 + "]" * 50_000, "nested too deeply"),
        ("a: " + "{b: " * 50_000 + "1" + "}" * 50_000, "nested too deeply"),
        ("a: &x [*x]\n", "not valid YAML|invalid"),
    ],
)
def test_unhashable_keys_and_deep_nesting_are_one_line(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError, match=message) as err:
        load_params(path)
    assert "\n" not in str(err.value) or "is invalid" in str(err.value)
    with pytest.raises(ValueError, match=message):
        set_videos(path, {"a": "x.mp4"})


def test_a_params_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(b'data:\n  videos: {a: "\xff"}\n')
    with pytest.raises(ParamsError, match=r"params\.yaml: not UTF-8 text \(byte 0xff on line 2\)"):
        load_params(path)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"chunk_window": 4}, r"trajectories\.chunk_window: unknown key \(did you mean 'chunk_windows'\?\)"),
        ({"dsi": {"preset": "fast"}}, r"trajectories\.dsi: unknown tracker section 'dsi' \(did you mean 'dis'\?\)"),
        ({"tracker": "rafty"}, r"trajectories\.tracker: unknown tracker 'rafty' \(did you mean 'raft'\?\)"),
    ],
)
def test_a_typo_in_trajectories_is_named_for_what_it_is(tmp_path, section, message):
    raw = sample_params_dict()
    raw["trajectories"].update(section)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=message):
        load_params(path)
