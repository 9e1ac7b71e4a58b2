"""Docs that run: every ```python block of README.md and docs/*.md is executed (issue #16).

* The blocks of one Markdown file share one namespace and run in order, like a notebook, so a
  later block may use what an earlier one defined. One test per file.
* The working folder is a fresh temporary folder laid out like a checkout: ``sample_data/``,
  ``configs/`` and ``scripts/`` link to the repository's, and ``../shared/data`` to the shared real
  data. So the docs use the paths a user types in the repository root, and whatever they write
  lands in the temporary folder.
* A block preceded directly by ``<!-- skip-test: reason -->`` is not run (only for what needs a
  GPU, a cluster, a long training or its checkpoint); it is still checked for syntax and, with
  every other block of its file, for undefined names (ruff F821) - a skipped block cannot rot
  into a ``NameError``.
* Tracebacks name the Markdown file and its line numbers.
* Shell blocks are not run (they need real studies, GPUs, SLURM), but every ``medseg ...`` command
  in them must name an existing command and only options it has, so the docs follow renamed options.

Written here rather than with pytest-markdown-docs / phmdoctest: those run each fence as its own
test (or need a ``continuation`` fence option) and know no skip comment; markdown-it-py (a rich
dependency) does the Markdown parsing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PYTHON_INFO = {"python", "py", "python3"}
SKIP_RE = re.compile(r"<!--\s*skip-test:\s*(?P<reason>.*?)\s*-->", re.S)
LINKED = ("sample_data", "configs", "scripts")  # repository folders the docs may read


@dataclass(frozen=True)
class Block:
    """One ```python fence: ``line`` is the 1-based Markdown line of its first code line."""

    path: Path
    line: int
    code: str
    skip: str | None


def doc_blocks(path: Path) -> list[Block]:
    """The ```python fences of ``path`` in order, with the reason of a skip comment just before."""
    tokens = MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8"))
    blocks: list[Block] = []
    pending: tuple[str, int] | None = None  # a skip comment waiting for its block
    for tok in tokens:
        if tok.type == "html_block" and (m := SKIP_RE.search(tok.content)):
            if pending is not None:
                raise AssertionError(f"{path}:{pending[1]}: skip-test comment not followed by a python block")
            pending = (m.group("reason"), (tok.map or [0])[0] + 1)
            continue
        if tok.type == "fence" and (tok.info.split() or [""])[0].lower() in PYTHON_INFO:
            assert tok.map is not None
            reason = pending[0] if pending is not None else None
            if pending is not None and not reason:
                raise AssertionError(f"{path}:{pending[1]}: skip-test comment without a reason")
            blocks.append(Block(path, tok.map[0] + 2, tok.content, reason))
            pending = None
        elif pending is not None and tok.type not in ("html_block",):
            raise AssertionError(f"{path}:{pending[1]}: skip-test comment not followed by a python block")
    if pending is not None:
        raise AssertionError(f"{path}:{pending[1]}: skip-test comment not followed by a python block")
    return blocks


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _shadow_source(path: Path, blocks: list[Block]) -> str:
    """The blocks of one file at their Markdown line numbers, every other line blank."""
    n_lines = len(path.read_text(encoding="utf-8").splitlines()) + 1
    lines = [""] * n_lines
    for b in blocks:
        for i, text in enumerate(b.code.splitlines()):
            lines[b.line - 1 + i] = text
    return "\n".join(lines) + "\n"


def _ruff() -> list[str] | None:
    exe = shutil.which("ruff")
    if exe:
        return [exe]
    try:
        import ruff  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "ruff"]


DOCS_WITH_CODE = [p for p in DOC_FILES if doc_blocks(p)]


@pytest.fixture()
def docs_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary folder laid out like a checkout beside ``../shared`` (see the module docstring)."""
    work = tmp_path / "medseg"
    work.mkdir()
    for name in LINKED:
        if (REPO / name).exists():
            (work / name).symlink_to(REPO / name, target_is_directory=True)
    shared = (REPO / ".." / "shared").resolve()
    if shared.is_dir():
        (tmp_path / "shared").symlink_to(shared, target_is_directory=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return work


def test_every_doc_with_python_is_collected() -> None:
    names = {_rel(p) for p in DOCS_WITH_CODE}
    assert {"docs/detection.md", "docs/labelling.md", "docs/predict.md"} <= names, names


@pytest.mark.parametrize("path", DOCS_WITH_CODE, ids=_rel)
def test_doc_python_blocks_have_no_undefined_names(path: Path) -> None:
    """Syntax and undefined names of all blocks of a file, skipped ones included (ruff F821)."""
    blocks = doc_blocks(path)
    source = _shadow_source(path, blocks)
    compile(source, _rel(path), "exec")  # a SyntaxError names the Markdown line
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    proc = subprocess.run(
        [*ruff, "check", "--isolated", "--select", "F821", "--output-format", "concise",
         "--stdin-filename", _rel(path).replace(".md", "_md.py"), "-"],
        input=source, capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode == 0, f"undefined names in {_rel(path)} (line = Markdown line):\n{proc.stdout}"


@pytest.mark.parametrize("path", DOCS_WITH_CODE, ids=_rel)
def test_doc_python_blocks_run(path: Path, docs_workspace: Path, shared_data: Path) -> None:
    """Run the file's blocks in order in one namespace; skipped blocks are reported, not run."""
    namespace: dict[str, object] = {"__name__": "__docs__"}
    timings = []
    skipped = []
    for b in doc_blocks(path):
        where = f"{_rel(path)}:{b.line}"
        if b.skip:
            skipped.append(f"{where} ({b.skip})")
            continue
        code = compile("\n" * (b.line - 1) + b.code, _rel(path), "exec")
        t0 = time.perf_counter()
        try:
            exec(code, namespace)
        except Exception as e:  # name the block; the traceback below points at its Markdown line
            raise AssertionError(f"the python block at {where} failed: {type(e).__name__}: {e}") from e
        finally:
            os.chdir(docs_workspace)  # a block that changes folder does not move the next one
        timings.append(f"{where} {time.perf_counter() - t0:.1f}s")
    print("ran:", ", ".join(timings) or "nothing")
    if skipped:
        print("skipped:", "; ".join(skipped))


def test_collector_reads_blocks_skips_and_rejects_stray_skip_comments(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "# t\n\n```python\na = 1\n```\n\n```bash\nls\n```\n\n"
        "<!-- skip-test: needs a GPU -->\n```python\nb = a + 1\n```\n\n```py\nc = 3\n```\n"
    )
    blocks = doc_blocks(doc)
    assert [(b.line, b.code, b.skip) for b in blocks] == [
        (4, "a = 1\n", None), (13, "b = a + 1\n", "needs a GPU"), (17, "c = 3\n", None)
    ]
    assert _shadow_source(doc, blocks).splitlines()[12] == "b = a + 1"
    doc.write_text("<!-- skip-test: reason -->\n```bash\nls\n```\n")
    with pytest.raises(AssertionError, match="not followed by a python block"):
        doc_blocks(doc)
    doc.write_text("<!-- skip-test: -->\n```python\nx = 1\n```\n")
    with pytest.raises(AssertionError, match="without a reason"):
        doc_blocks(doc)


SHELL_INFO = {"", "bash", "sh", "shell", "console"}


def doc_shell_commands(path: Path) -> list[tuple[int, str]]:
    """``(Markdown line, command)`` for every ``medseg ...`` command in the shell fences of ``path``.

    Continuation lines (trailing ``\\``) are joined; ``$(...)`` substitutions, comments, and what
    follows ``|``, ``&&``, ``||`` or ``;`` are separate commands.
    """
    tokens = MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8"))
    out: list[tuple[int, str]] = []
    for tok in tokens:
        if tok.type != "fence" or (tok.info.split() or [""])[0].lower() not in SHELL_INFO:
            continue
        assert tok.map is not None
        joined: list[tuple[int, str]] = []
        for i, raw in enumerate(tok.content.splitlines()):
            line = raw.rstrip()
            if joined and joined[-1][1].endswith("\\"):
                joined[-1] = (joined[-1][0], joined[-1][1][:-1] + " " + line.strip())
            else:
                joined.append((tok.map[0] + 2 + i, line))
        for lineno, line in joined:
            line = re.sub(r"\$\([^)]*\)", " ", line)  # command substitutions are other commands
            line = re.sub(r"(^|\s)#.*$", "", line)  # comments
            for part in re.split(r"\|\||&&|[|;]", line):
                part = part.strip()
                if part.startswith("srun "):
                    part = part[5:].strip()
                if part.startswith("medseg ") or part == "medseg":
                    out.append((lineno, part))
    return out


def _cli_options(words: list[str]) -> tuple[str, set[str]] | None:
    """``(command path, its options)`` for ``words`` after ``medseg``; None when no command is named."""
    import typer.main

    from medseg.cli import app

    cmd = typer.main.get_command(app)  # typer may vendor its own click: groups are told by .commands
    name = "medseg"
    rest = [w for w in words if not w.startswith("-")]
    while hasattr(cmd, "commands") and rest:
        sub = cmd.commands.get(rest[0])
        if sub is None:
            raise AssertionError(f"unknown command {name} {rest[0]!r}")
        cmd, name, rest = sub, f"{name} {rest[0]}", rest[1:]
    if hasattr(cmd, "commands"):
        return None
    opts = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    return name, opts


DOCS_WITH_SHELL = [p for p in DOC_FILES if doc_shell_commands(p)]


@pytest.mark.parametrize("path", DOCS_WITH_SHELL, ids=_rel)
def test_doc_shell_commands_use_existing_commands_and_options(path: Path) -> None:
    """Every ``medseg`` command shown in a shell block names a real command and real options."""
    problems = _shell_problems(path)
    assert not problems, "\n".join(problems)


def test_shell_check_finds_unknown_commands_and_options(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "```bash\nmedseg predict IN --out O \\\n    --bogus 1   # --comment\n"
        "pip install . && medseg qc $(ls -d masks) --fail-on-flag | tee log\n"
        "medseg al select --pool P --k 3\nmedseg frobnicate x\n```\n"
    )
    cmds = doc_shell_commands(doc)
    assert [c for _, c in cmds] == [
        "medseg predict IN --out O  --bogus 1", "medseg qc   --fail-on-flag", "medseg al select --pool P --k 3",
        "medseg frobnicate x",
    ]
    assert [ln for ln, _ in cmds] == [2, 4, 5, 6]
    assert _shell_problems(doc) == [
        f"{doc}:2: `medseg predict` has no option --bogus", f"{doc}:6: unknown command medseg 'frobnicate'"
    ]


def _shell_problems(path: Path) -> list[str]:
    problems = []
    for lineno, command in doc_shell_commands(path):
        words = [w.strip("[]") for w in command.split()[1:]]
        try:
            found = _cli_options(words)
        except AssertionError as e:
            problems.append(f"{_where(path)}:{lineno}: {e}")
            continue
        if found is None:
            continue
        name, opts = found
        for w in words:
            opt = w.split("=", 1)[0]
            if re.fullmatch(r"--?[A-Za-z][\w-]*", opt) and opt not in opts:
                problems.append(f"{_where(path)}:{lineno}: `{name}` has no option {opt}")
    return problems


def _where(path: Path) -> str:
    return _rel(path) if path.is_relative_to(REPO) else str(path)
