"""The commands README and docs/ show run as written when a user copies them.

Every fenced ``bash`` block is valid shell (``bash -n``), and every command in one is parsed by
its own tool's parser: ``dvc`` by DVC's, ``densemotion`` (also under ``torchrun``) by ours,
``scripts/dev.sh`` by its modes, ``pip install`` by the project's extras, ``git`` by its command
list; a command of another tool fails the test until it is given a parser here. Running them is
other tests' work (the pipeline and remote recipes are run by test_e2e_*); these catch the typo,
the renamed option and the placeholder a shell would read as a redirection. Every
`dvc exp run -S KEY=VALUE` also parses with DVC's own override parser (Hydra's grammar) and names
a real key with a valid value."""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import re
import shlex
import subprocess

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


BASH_BLOCKS = [
    (f"{path.name}:{path.read_text()[: m.start()].count(chr(10)) + 1}", m.group(1))
    for path in DOCS
    for m in re.finditer(r"^```bash\n(.*?)^```", path.read_text(), re.S | re.M)
]
SEPARATORS = {"&&", "||", ";", "|"}


def _commands(block: str) -> list[list[str]]:
    """The commands of a shell block as argv lists: comments dropped, continuation lines joined,
    ``a && b`` split."""
    argvs: list[list[str]] = []
    for line in block.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        argv: list[str] = []
        for token in [*lexer, ";"]:
            if token in SEPARATORS:
                argvs += [argv] if argv else []
                argv = []
            elif token.strip("()"):
                argv.append(token)
    return argvs


COMMAND_LINES = [(where, argv) for where, block in BASH_BLOCKS for argv in _commands(block)]


def _densemotion(argv: list[str]) -> None:
    from densemotion.__main__ import COMMANDS

    assert argv and argv[0] in COMMANDS, f"no densemotion command {argv[:1]}"
    module = importlib.import_module(f"densemotion.cli.{COMMANDS[argv[0]][0]}")
    module._parser().parse_args(argv[1:])  # SystemExit(2) with argparse's message on a bad option


def _dvc(argv: list[str]) -> None:
    from dvc.cli import parse_args

    parse_args(argv)  # DvcParserError on an unknown command or option


def _torchrun(argv: list[str]) -> None:
    from torch.distributed.run import parse_args

    args = parse_args(argv)
    assert args.module and args.training_script == "densemotion", argv
    _densemotion(args.training_script_args)


def _dev_sh(argv: list[str]) -> None:
    script = (REPO / argv[0]).read_text()
    modes = re.findall(r"^  (\w+)\) ", script, re.M)  # the arms of its case statement
    assert len(argv) > 1 and argv[1] in modes, f"{argv}: dev.sh's modes are {modes}"


def _pip(argv: list[str]) -> None:
    assert argv[0] == "install" and argv[1] == "-e", argv
    extras = importlib.metadata.metadata("densemotion").get_all("Provides-Extra") or []  # pyproject's
    (wanted,) = re.fullmatch(r"\.\[([\w,-]+)\]", argv[2]).groups()  # type: ignore[union-attr]
    assert set(wanted.split(",")) <= set(extras), f"{argv}: extras are {sorted(extras)}"


def _git(argv: list[str]) -> None:
    listed = subprocess.run(["git", "--list-cmds=main"], capture_output=True, text=True, check=True).stdout
    assert argv[0] in listed.split(), f"git has no command {argv[0]!r}"


TOOLS = {"densemotion": _densemotion, "dvc": _dvc, "torchrun": _torchrun, "pip": _pip, "git": _git}


def test_the_docs_show_shell_blocks_and_commands():
    assert len(BASH_BLOCKS) >= 8 and len(COMMAND_LINES) >= 25, COMMAND_LINES
    assert {argv[0] for _, argv in COMMAND_LINES} >= {"dvc", "densemotion", "git", "bash"}


@pytest.mark.parametrize(("where", "block"), BASH_BLOCKS, ids=[w for w, _ in BASH_BLOCKS])
def test_every_fenced_bash_block_is_valid_shell(where, block):
    checked = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
    assert checked.returncode == 0, f"{where}: {checked.stderr}"


@pytest.mark.parametrize(("where", "argv"), COMMAND_LINES, ids=[f"{w} {' '.join(a)[:60]}" for w, a in COMMAND_LINES])
def test_every_fenced_command_parses_as_its_tool_would(where, argv):
    tool, rest = argv[0], argv[1:]
    if tool == "bash" and rest[:1] == ["scripts/dev.sh"]:
        return _dev_sh(rest)
    assert tool in TOOLS, f"{where}: {shlex.join(argv)}: no parser for {tool!r} in this test"
    try:
        TOOLS[tool](rest)
    except SystemExit as exc:  # argparse's way of saying no
        pytest.fail(f"{where}: {shlex.join(argv)}: {tool} rejects it (exit {exc.code})")


def test_a_bad_command_is_caught():
    """The checks above can fail: a misspelt option, command, mode or extra, and a placeholder."""
    from dvc.cli import DvcParserError

    for tool, argv in [
        ("densemotion", ["acquire", "--sise", "256", "list.csv", "out"]),
        ("dvc", ["remote", "ad", "x", "y"]),
        ("pip", ["install", "-e", ".[acqire]"]),
        ("git", ["ad", "file"]),
    ]:
        with pytest.raises((SystemExit, AssertionError, DvcParserError)):
            TOOLS[tool](argv)
    with pytest.raises(AssertionError):
        _dev_sh(["scripts/dev.sh", "pipelines"])
    assert subprocess.run(["bash", "-n"], input="dvc remote add gd gdrive://<folder-id>\n", text=True).returncode != 0
    assert _commands("a 'x # y' && b \\\n  --c  # note\n# only a comment\n") == [["a", "x # y"], ["b", "--c"]]
