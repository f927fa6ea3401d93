"""The README stays true (issue 12, item 8): its default table is a fresh run's, and
every shell command in its code blocks runs as written from the repository root."""

import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, requires_fluidsynth

README = REPO / "README.md"
VENV_BIN = REPO / ".venv" / "bin"
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}


def code_blocks(text):
    """``[(language, [lines])]`` of the fenced blocks of a markdown text."""
    blocks, language, lines = [], None, None
    for line in text.splitlines():
        if line.startswith("```"):
            if lines is None:
                language, lines = line[3:].strip(), []
            else:
                blocks.append((language, lines))
                language, lines = None, None
        elif lines is not None:
            lines.append(line)
    if lines is not None:
        raise AssertionError(f"{README}: a code block ({language!r}) is never closed")
    return blocks


def default_table(text):
    """The table lines of the README's section "The default run"."""
    section = text.split("\n## The default run\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def md_table(text):
    """The leading table lines of ``table.md``."""
    lines = text.splitlines()
    end = next(i for i, line in enumerate(lines) if not line.startswith("|"))
    return lines[:end]


def cells(line):
    """The cells of a markdown table line, stripped (a rule line's dashes as one "-")."""
    out = [cell.strip() for cell in line.strip().strip("|").split("|")]
    return ["-" if cell and set(cell) <= {"-", ":"} else cell for cell in out]


def commands(line):
    """The commands of one shell line: its ``&&`` / ``||`` / ``;`` / ``|`` parts, each
    as its words without leading ``VAR=value`` assignments (comments dropped)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    out, words = [], []
    for token in lexer:
        if token in {"&&", "||", ";", "|", "&"}:
            out.append(words)
            words = []
        else:
            words.append(token)
    out.append(words)
    stripped = []
    for ws in out:
        while ws and re.fullmatch(r"[A-Za-z_]\w*=.*", ws[0]):
            ws = ws[1:]
        if ws:
            stripped.append(ws)
    return stripped


def command_problem(words, *, path):
    """Why a command would not run as written from the repository root, or None."""
    tool = words[0]
    if tool.startswith(".venv/bin/"):
        # bin/setup (the README's first command) creates .venv; once it exists, the tool must be in it
        if VENV_BIN.is_dir() and not (REPO / tool).exists():
            return f"{tool}: no such tool in .venv (requirements.txt does not install it)"
        return None
    if "/" in tool:
        return None if (REPO / tool).is_file() else f"{tool} is not a file of the repository"
    if (VENV_BIN / tool).exists() and shutil.which(tool, path=path) is None:
        return f"bare {tool!r} is not on PATH; write .venv/bin/{tool}"
    if shutil.which(tool, path=path) is None:
        return f"{tool!r} is neither on PATH nor a file of the repository"
    return None


def test_every_readme_shell_command_runs_as_written():
    # PATH as a fresh shell has it: the virtual environment is not activated
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != VENV_BIN
    )
    checked, problems = 0, []
    for language, lines in code_blocks(README.read_text()):
        if language not in SHELL_BLOCKS:
            continue
        for line in lines:
            for words in commands(line):
                checked += 1
                problem = command_problem(words, path=path)
                if problem:
                    problems.append(f"{line.strip()!r}: {problem}")
    assert checked >= 5, "the README's shell blocks were not found"
    assert not problems, "\n".join(problems)


def test_a_bare_venv_tool_is_caught():
    # the check itself: what the README must not say
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != VENV_BIN
    )
    if shutil.which("snakemake", path=path) is not None:
        pytest.skip("snakemake is installed system-wide here; a bare call would run")
    (words,) = commands("MIRPROBE_X=1 snakemake --cores all  # run")
    assert words == ["snakemake", "--cores", "all"]
    assert "write .venv/bin/snakemake" in command_problem(words, path=path)
    assert command_problem([".venv/bin/snakemake"], path=path) is None
    assert [w[0] for w in commands("bin/setup && .venv/bin/ruff check . | cat")] == [
        "bin/setup",
        ".venv/bin/ruff",
        "cat",
    ]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """One run of ``config.yaml`` as it is, with the repository's .venv snakemake and
    the README's ``--cores all``, in a fresh working directory."""
    snakemake = VENV_BIN / "snakemake"
    if not snakemake.exists():
        pytest.skip(f"{snakemake} absent (bin/setup creates it)")
    workdir = tmp_path_factory.mktemp("readme_run")
    command = [
        str(snakemake),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--configfile",
        str(REPO / "config.yaml"),
        "--directory",
        str(workdir),
        "--cores",
        "all",
    ]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
    # the figure for the README's stated run time
    print(f"default run: {wall:.0f} s on {os.cpu_count()} cores")
    return workdir


@pytest.mark.workflow
@requires_fluidsynth
def test_the_readme_table_is_the_default_runs(default_run):
    ours = md_table((default_run / "results" / "table.md").read_text())
    assert len(ours) >= 3
    assert default_table(README.read_text()) == ours, "\n".join(ours)


def readme_row_entry(text):
    """The ``representations:`` entry the README offers beside the default run (its
    yaml block naming ``musicgen_tiny_random``), as a mapping."""
    import yaml

    for language, lines in code_blocks(text):
        if language == "yaml" and any("musicgen_tiny_random:" in line for line in lines):
            return yaml.safe_load("\n".join(lines))
    raise AssertionError(f"{README}: no yaml block names musicgen_tiny_random")


def readme_row_lines(text):
    """The table lines the README states for that entry (the table after its block)."""
    section = text.split("musicgen_tiny_random:", 1)[1]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


@pytest.fixture(scope="module")
def default_run_with_readme_row(default_run, tmp_path_factory):
    """The default run with the README's MusicGen-tiny entry added, as a user adds it:
    only its cells and the table are new (a copy, so the default run stays as it was)."""
    import yaml

    entry = readme_row_entry(README.read_text())
    workdir = tmp_path_factory.mktemp("readme_row_run")
    shutil.copytree(default_run, workdir, dirs_exist_ok=True, symlinks=True)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["representations"] |= entry
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run(
        [
            str(VENV_BIN / "snakemake"),
            "--snakefile",
            str(REPO / "Snakefile"),
            "--configfile",
            str(workdir / "config.yaml"),
            "--directory",
            str(workdir),
            "--cores",
            "all",
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
    return workdir, entry


@pytest.mark.workflow
@requires_fluidsynth
def test_the_readme_row_is_what_adding_its_entry_gives(default_run, default_run_with_readme_row):
    workdir, entry = default_run_with_readme_row
    (name,) = entry
    assert len(entry[name]["layers"]) >= 2, "the README's entry should show a per-layer curve"
    table = md_table((workdir / "results" / "table.md").read_text())
    label = entry[name]["label"]
    ours = [line for line in table if line.startswith(f"| {label} ")]
    assert len(ours) == len(entry[name]["layers"])
    stated = readme_row_lines(README.read_text())
    assert [cells(line) for line in stated] == [cells(line) for line in ours], "\n".join(ours)
    # the default rows are untouched by the addition (the columns are only wider)
    default = md_table((default_run / "results" / "table.md").read_text())
    others = [cells(line) for line in table if line not in ours]
    assert others == [cells(line) for line in default]


@pytest.mark.workflow
@requires_fluidsynth
def test_the_default_runs_report_holds_curves_deltas_and_records(
    default_run_with_readme_row, tmp_path
):
    import json
    import zipfile

    workdir, entry = default_run_with_readme_row
    (name,) = entry
    report = tmp_path / "report.zip"
    command = [
        str(VENV_BIN / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--configfile",
        str(workdir / "config.yaml"),
        "--directory",
        str(workdir),
        "--report",
        str(report),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    archive = zipfile.ZipFile(report)
    names = archive.namelist()
    # the table in every format
    for wanted in ("table.md", "table.csv", "table.tex"):
        assert any(n.endswith(f"/{wanted}") for n in names), wanted
    records = sorted((workdir / "results" / "provenance").rglob("*.json"))
    # chroma, mfcc, musicnn and the README entry's layers on synth_key
    assert len(records) == 3 + len(entry[name]["layers"])
    for path in records:
        record = json.loads(path.read_text())
        probe = record["selected_probe"]
        # the selected probe's whole validation curve, its kept step one of its evaluations
        steps = [step for step, _ in probe["curve"]]
        assert steps[0] == 0 and probe["best_step"] in steps and len(steps) >= 2
        rep, layer = path.parent.name, path.stem
        for kind in ("curve", "confusion"):
            (figure,) = [n for n in names if n.endswith(f"{kind}--synth_key--{rep}--{layer}.png")]
            assert archive.read(figure)[:8] == b"\x89PNG\r\n\x1a\n"
    # the multi-layer entry's per-layer curve, and only its
    layer_figures = [n for n in names if "/layers--" in n or n.startswith("layers--")]
    assert [n.rsplit("/", 1)[-1] for n in layer_figures] == [f"layers--synth_key--{name}.png"]
    assert archive.read(layer_figures[0])[:8] == b"\x89PNG\r\n\x1a\n"
    # every provenance record is attached, as it is
    attached = sorted(archive.read(n) for n in names if n.endswith(".json"))
    assert attached == sorted(path.read_bytes() for path in records)
    (delta,) = [n for n in names if n.endswith("/published_delta.md")]
    # the default config quotes no published row
    assert "nothing to compare" in archive.read(delta).decode()
