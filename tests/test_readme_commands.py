"""Every `dvc exp run -S KEY=VALUE` that README and docs/ show parses with DVC's own override
parser (Hydra's grammar) and names a real key with a valid value: a user copies them as written."""

from __future__ import annotations

import copy
import re
import shlex

import pytest

from densemotion.params import parse_params

from conftest import REPO, sample_params_dict

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _exp_run_lines() -> list[tuple[str, str]]:
    """(file, command) for each `dvc exp run ... -S ...`, in fenced blocks and inline code."""
    found = []
    for path in DOCS:
        text = path.read_text()
        fenced = [line for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S) for line in block.splitlines()]
        inline = [" ".join(code.split()) for code in re.findall(r"`([^`\n]*(?:\n[^`\n]*)?)`", text)]
        for command in fenced + inline:
            command = command.split("#", 1)[0] if command.lstrip().startswith("dvc") else command
            if "dvc exp run" in command and " -S " in command and "-S ..." not in command:
                found.append((path.name, command.strip()))
    return found


COMMANDS = _exp_run_lines()


def test_the_docs_show_exp_run_commands():
    assert len(COMMANDS) >= 5, COMMANDS  # the parser below must have something to read


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[c for _, c in COMMANDS])
def test_exp_run_overrides_parse_and_name_real_keys(where, command):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = shlex.split(command[command.index("dvc exp run") :])
    overrides = [args[i + 1] for i, a in enumerate(args) if a == "-S"]
    parsed = OverridesParser.create().parse_overrides(overrides)  # DVC's parser: raises as `dvc exp run` would
    raw = copy.deepcopy(sample_params_dict())
    for override in parsed:
        *path, leaf = override.key_or_group.split(".")
        node = raw
        for key in path:
            assert key in node, f"{where}: {command}: no params section {override.key_or_group}"
            node = node[key]
        node[leaf] = override.value()
    parse_params(raw, f"{where}: {command}")  # a real key with a valid value
