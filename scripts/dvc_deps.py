"""dvc.yaml's code deps, computed from the imports: each stage lists exactly the code it runs.

    python scripts/dvc_deps.py --check    one line per stage whose deps differ; exit 1 if any
    python scripts/dvc_deps.py --write    rewrite the src/densemotion/*.py deps, nothing else
                                          (exit 1 if what it cannot fix remains, 2 if it cannot write)

A stage's code is the import closure of the module its command runs (``python -m
densemotion.cli.X``): every ``import`` reachable from it (inside functions too; not under ``if
TYPE_CHECKING:``), with each package's ``__init__``. The tracker registry imports the package of
the tracker in use only, so a stage whose deps name ``${trajectories.tracker}`` (the folder dep
``src/densemotion/tracking/${trajectories.tracker}``) lists the code any tracker needs outside its
own folder: one dvc.yaml serves every tracker.

--write touches only the deps entries that name one ``src/densemotion/...py`` file (sorted, where
the first of them stood); every other line of dvc.yaml stays byte for byte. Folder deps and
interpolated ones (``${item}``, the tracker folder) are kept as written and are checked: every
file under a folder dep is imported. The script reads the code without importing it (no install
needed). tests/test_dvc_deps.py runs --check and imports the closure from here.
"""

from __future__ import annotations

import argparse
import ast
import functools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "densemotion"
TRACKER_VAR = "${trajectories.tracker}"
MODULE_RE = re.compile(r"\bpython3?\s+-m\s+([\w.]+)")


def module_file(name: str, root: Path = REPO) -> Path | None:
    """The file of module ``name`` under ``root``/src/, or None when it is not ours."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = (root / "src").joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


@functools.cache
def _imports(path: Path, name: str, mtime_ns: int) -> frozenset[str]:
    tree = ast.parse(path.read_bytes(), filename=str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom) or _under_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        else:
            base = node.module or ""
            if node.level:  # relative: level 1 is the package itself
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(found)


def imported_modules(path: Path, name: str) -> set[str]:
    """Module names ``path`` (module ``name``) imports at run time, ``from X import Y`` as X and X.Y."""
    return set(_imports(path, name, path.stat().st_mtime_ns))


def closure(start: str, tracker: str | None, root: Path = REPO) -> set[Path]:
    """Files of every densemotion module ``start`` reaches, package __init__ files included."""
    todo, seen, files = [start], set(), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        file = module_file(name, root)
        if file is None:
            continue
        files.add(file)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run first
        todo.extend(imported_modules(file, name))
        if name == f"{PACKAGE}.tracking.registry" and tracker is not None:
            todo.append(f"{PACKAGE}.tracking.{tracker}")  # registry.get imports the tracker in use
    return files


def trackers(root: Path = REPO) -> list[str]:
    """The tracker packages under src/densemotion/tracking/."""
    folder = root / "src" / PACKAGE / "tracking"
    return sorted(p.name for p in folder.iterdir() if (p / "__init__.py").is_file())


def stages(text: str) -> dict[str, dict]:
    """Each stage's definition by name; a ``foreach``/``matrix`` stage's ``do`` body for it."""
    raw = yaml.safe_load(text).get("stages") or {}
    return {str(name): stage.get("do", stage) for name, stage in raw.items()}


def stage_modules(cmd: str | list[str]) -> list[str]:
    """The modules a stage command runs with ``python -m``, in order."""
    return MODULE_RE.findall(" && ".join(cmd) if isinstance(cmd, list) else cmd)


def is_code_dep(dep: object) -> bool:
    """A deps entry that --write owns: one .py file under src/densemotion/, no interpolation."""
    return isinstance(dep, str) and dep.startswith(f"src/{PACKAGE}/") and dep.endswith(".py") and "${" not in dep


def _rel(files: set[Path], root: Path) -> list[str]:
    return sorted(f.relative_to(root).as_posix() for f in files)


@dataclass
class StageDeps:
    """What one stage lists and what its imports say it should."""

    name: str
    listed: list[str]  # the code deps as written, in order
    want: list[str]  # the code deps it should list, sorted
    problems: list[str] = field(default_factory=list)  # what --write cannot fix

    def report(self) -> str | None:
        """One line saying how the deps differ, or None when they match."""
        have, want = set(self.listed), set(self.want)
        parts = []
        if want - have:
            parts.append(f"missing {', '.join(sorted(want - have))}")
        if have - want:
            parts.append(f"extra {', '.join(sorted(have - want))}")
        dups = sorted({d for d in self.listed if self.listed.count(d) > 1})
        if dups:
            parts.append(f"listed twice {', '.join(dups)}")
        if not parts and self.listed != self.want:
            parts.append("code deps out of order (--write sorts them)")
        parts += dict.fromkeys(self.problems)  # once, though found for each tracker
        return f"{self.name}: {'; '.join(parts)}" if parts else None


def stage_deps(name: str, spec: dict, root: Path = REPO) -> StageDeps:
    """The code deps stage ``name`` (its definition ``spec``) lists, and those it should list."""
    deps = spec.get("deps") or []
    result = StageDeps(name, [d for d in deps if is_code_dep(d)], [])
    modules = stage_modules(spec.get("cmd", ""))
    if not modules:
        result.problems.append("its cmd runs no module with python -m (a stage runs python -m densemotion.cli.X)")
        result.want = result.listed
        return result
    odd = [m for m in modules if not m.startswith(f"{PACKAGE}.cli.")]
    if odd:
        result.problems.append(f"run a stage CLI with python -m, not {', '.join(odd)}")
    others = [d for d in deps if isinstance(d, str) and d.startswith(f"src/{PACKAGE}/") and not is_code_dep(d)]
    choices: list[str | None] = trackers(root) if any(TRACKER_VAR in str(d) for d in deps) else [None]
    want: set[Path] = set()
    for tracker in choices:
        reached = set().union(*(closure(m, tracker, root) for m in modules))
        covered: set[Path] = set()
        for dep in others:  # a folder stands for its code; a file that is not code (data) is left alone
            path = root / (dep.replace(TRACKER_VAR, tracker) if tracker else dep)
            which = f" (tracker {tracker})" if tracker and TRACKER_VAR in dep else ""
            if path.is_file():
                continue
            if not path.is_dir():
                result.problems.append(f"{dep}{which} names no file or folder")
                continue
            files = set(path.rglob("*.py"))
            if files - reached:
                unused = ", ".join(_rel(files - reached, root))
                result.problems.append(f"folder dep {dep}{which} holds code it does not import: {unused}")
            covered |= files
        want |= reached - covered
    result.want = _rel(want, root)
    return result


def all_stage_deps(text: str, root: Path = REPO) -> list[StageDeps]:
    return [stage_deps(name, spec, root) for name, spec in stages(text).items()]


def check(text: str, root: Path = REPO) -> list[str]:
    """One line per stage of dvc.yaml ``text`` whose code deps differ from its imports."""
    return [line for s in all_stage_deps(text, root) if (line := s.report())]


def _value(mapping: yaml.Node, key: str) -> yaml.Node | None:
    if isinstance(mapping, yaml.MappingNode):
        for k, v in mapping.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    return None


def write(text: str, root: Path = REPO) -> str:
    """dvc.yaml ``text`` with each stage's src/densemotion/*.py deps replaced by its import closure.

    The code deps' lines are taken out and the sorted list goes where the first of them stood (at
    the end of deps when there was none); a kept entry keeps its line (a trailing comment too).
    Every other line is left as it is."""
    unterminated = bool(text) and not text.endswith("\n")
    lines = [part + "\n" for part in (text + "\n" if unterminated else text).split("\n")[:-1]]
    eol = "\r\n" if "\r\n" in text else "\n"
    wanted = {s.name: s.want for s in all_stage_deps(text, root)}
    drop: set[int] = set()
    insert: dict[int, list[str]] = {}
    stages_node = _value(yaml.compose(text), "stages")
    for key, node in stages_node.value if isinstance(stages_node, yaml.MappingNode) else []:
        deps = _value(_value(node, "do") or node, "deps")
        if deps is None or not deps.value:
            if wanted.get(key.value):
                raise ValueError(f"stage {key.value}: no deps list to write its code deps into")
            continue
        if not isinstance(deps, yaml.SequenceNode) or deps.flow_style:
            raise ValueError(f"stage {key.value}: deps must be a block list (one '- path' a line) to be written")
        code = [item for item in deps.value if isinstance(item, yaml.ScalarNode) and is_code_dep(item.value)]
        kept: dict[str, str] = {}
        for item in code:
            n = item.start_mark.line
            if item.end_mark.line != n or not lines[n].lstrip().startswith("-"):
                raise ValueError(f"stage {key.value}: put deps entry {item.value} on a line of its own")
            kept.setdefault(item.value, lines[n])
            drop.add(n)
        if code:
            at = code[0].start_mark.line
        else:  # after the last entry
            last = deps.value[-1]
            at = last.end_mark.line + (1 if last.end_mark.column else 0)
        first = lines[(code or deps.value)[0].start_mark.line]
        indent = first[: len(first) - len(first.lstrip())]
        insert[at] = [kept.get(path, f"{indent}- {path}{eol}") for path in wanted[key.value]]
    out: list[str] = []
    for i, line in enumerate(lines):
        out += insert.get(i, [])
        if i not in drop:
            out.append(line)
    out += insert.get(len(lines), [])
    new = "".join(out)
    return new[:-1] if unterminated and new.endswith("\n") else new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="report the stages whose code deps differ; exit 1 if any")
    mode.add_argument("--write", action="store_true", help="rewrite the src/densemotion/*.py deps of every stage")
    parser.add_argument("--root", type=Path, default=REPO, help="the tree whose src/ is read (default: this repo)")
    parser.add_argument("--file", type=Path, help="the dvc.yaml to check or write (default: ROOT/dvc.yaml)")
    args = parser.parse_args(argv)
    path = args.file or args.root / "dvc.yaml"
    text = path.read_bytes().decode("utf-8")  # as it is: no newline translation
    if args.write:
        try:
            new = write(text, args.root)
        except ValueError as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 2
        changed = [s.name for s in all_stage_deps(text, args.root) if s.listed != s.want]
        if new != text:
            path.write_bytes(new.encode("utf-8"))
            print(f"{path}: wrote the code deps of {', '.join(changed)}")
        else:
            print(f"{path}: code deps unchanged")
        text = new
    problems = check(text, args.root)
    for line in problems:
        print(line)
    if not problems and args.check:
        print("dvc.yaml code deps match the imports")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
