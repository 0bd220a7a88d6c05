"""The test tiers: GitLab runs the quick tier on a branch's push and the whole suite (.ci/run) on
merge requests and the default branch; the quick tier holds no real `dvc repro`.

A test that runs the real DVC pipeline (or the notebook, or the whole CI) takes minutes: it must
be marked ``slow`` so that ``pytest -m "not slow"`` (``scripts/dev.sh quick``) stays a few minutes.
"""

from __future__ import annotations

import ast
import re
import sys

import yaml

from conftest import REPO

CI = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())
# what a test does that only the slow tier may: the real pipeline, experiments, the notebook
SLOW_CALLS = re.compile(r"""["']dvc["'],\s*["'](repro|exp)["']|\bbuilt_repo\b|run_notebook|\.ci/run|["']pipeline["']""")


def _ifs(job: dict) -> list[tuple[str, str]]:
    return [(rule["if"], rule.get("when", "on_success")) for rule in job["rules"]]


def test_quick_tier_on_branch_pushes_and_the_whole_suite_on_merge_requests_and_main():
    quick, test = CI["quick"], CI["test"]
    assert quick["script"] == ["bash scripts/dev.sh quick"] and test["script"] == ["bash .ci/run"]
    assert _ifs(quick) == [
        ('$CI_PIPELINE_SOURCE == "merge_request_event"', "never"),
        ("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", "never"),
        ("$CI_COMMIT_BRANCH", "on_success"),
    ]
    assert _ifs(test) == [
        ('$CI_PIPELINE_SOURCE == "merge_request_event"', "on_success"),
        ("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", "on_success"),
    ]
    dev = (REPO / "scripts" / "dev.sh").read_text()
    quick_body = dev[dev.index("quick() {") : dev.index("}", dev.index("quick() {"))]
    assert '-m "not slow"' in quick_body
    assert "exec bash scripts/dev.sh test" in (REPO / ".ci" / "run").read_text()


def _marked_slow(tree: ast.Module) -> set[str]:
    """'*' when the module's pytestmark has slow, else the names of test functions marked slow."""
    marked: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(getattr(t, "id", "") == "pytestmark" for t in targets) and "slow" in ast.unparse(node.value):
            marked.add("*")
        if isinstance(node, ast.FunctionDef) and any("slow" in ast.unparse(d) for d in node.decorator_list):
            marked.add(node.name)
    return marked


def slow_calls_outside_the_slow_tier() -> list[str]:
    found = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        if path.name == "test_ci_config.py":  # names them, runs none
            continue
        tree = ast.parse(path.read_text())
        marked = _marked_slow(tree)
        if "*" in marked:
            continue
        for node in tree.body:
            test = isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and node.name not in marked
            if test and SLOW_CALLS.search(ast.unparse(node)):
                found.append(f"{path.name}::{node.name}")
    return found


def test_no_real_pipeline_run_in_the_quick_tier():
    assert slow_calls_outside_the_slow_tier() == []


def test_an_unmarked_pipeline_run_is_caught(tmp_path, monkeypatch):
    """The check can fail: a quick test that runs `dvc repro` is named."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_x.py").write_text('def test_a(repo):\n    run(repo, "dvc", "repro")\n\n\ndef test_b():\n    pass\n')
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert slow_calls_outside_the_slow_tier() == ["test_x.py::test_a"]
