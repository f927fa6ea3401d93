"""Re-run the mutation survey of tests/MUTATIONS.md: apply each mutation alone to the
sources, run the tests said to catch it, report which failed, and restore the file
with ``git checkout``. Run from a clean worktree (it refuses a dirty source file):

    MIRPROBE_FIXTURES=/work/shared/fixtures PYTHONPATH=$PWD .venv/bin/python tests/mutation_survey.py [a b ...]

Not a test module (pytest does not collect it): it edits the sources while it runs.
"""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: name -> (file, text, replacement, pytest arguments of the tests that must fail)
MUTATIONS = {
    "a": (
        "mirprobe/stages.py",
        'train, valid = splits["train"], splits["valid"]',
        'train, valid = splits["train"], splits["test"]',
        ["tests/test_stages.py"],
    ),
    "b": (
        "mirprobe/probes/common.py",
        "return one / torch.tensor(1.0 - dropout, dtype=dtype)",
        "return one * torch.tensor(1.0 - dropout, dtype=dtype)",
        ["tests/test_probes_training.py"],
    ),
    "c": (
        "mirprobe/task_types.py",
        "return groups if self.scores_songs else None",
        "return None",
        ["tests/test_stages.py", "-k", "key"],
    ),
    "d": (
        "mirprobe/stages.py",
        'ensemble=getattr(probe, "ensemble", None),',
        'ensemble="mean_prob",',
        ["tests/test_stages.py", "-k", "key"],
    ),
    "d-vote": (
        "mirprobe/stages.py",
        'ensemble=getattr(probe, "ensemble", None),',
        'ensemble="vote",',
        ["tests/test_stages.py", "-k", "key"],
    ),
    "d-train-vote": (
        "mirprobe/task_types.py",
        "    ensemble_strategies = ENSEMBLE_STRATEGIES\n",
        '    ensemble_strategies = ("vote",)\n',
        ["tests/test_stages.py", "-k", "key"],
    ),
    "e": (
        "mirprobe/audio.py",
        "y = y.mean(axis=1)",
        "y = y[:, 0]",
        ["tests/test_audio.py", "-k", "stereo"],
    ),
    "f": (
        "mirprobe/stages.py",
        "audio_sha256=file_sha256(checksums_path)",
        "audio_sha256=file_sha256(metadata_path)",
        ["tests/test_provenance.py"],
    ),
    "g": (
        "mirprobe/tables.py",
        'f"{100 * value:.1f}"',
        'f"{int(1000 * value) / 10:.1f}"',
        ["tests/test_tables.py"],
    ),
    "h": (
        "mirprobe/task_types.py",
        "index = {name: i for i, name in enumerate(labels)}\n        unknown",
        "index = {name: i for i, name in enumerate(sorted(labels))}\n        unknown",
        [
            "tests/test_tasks.py",
            "tests/test_task_types.py",
            "tests/test_stages.py",
            "-k",
            "key_stages or class_indices or class_encoding",
        ],
    ),
    "i": (
        "mirprobe/tasks.py",
        "    if missing:\n",
        "    if False:\n",
        ["tests/test_tasks.py", "tests/test_stages.py", "-k", "not key_stages"],
    ),
}


def survey(name):
    path, text, replacement, tests = MUTATIONS[name]
    source = REPO / path
    if subprocess.run(["git", "-C", str(REPO), "diff", "--quiet", "--", path]).returncode:
        sys.exit(f"{path} has uncommitted changes; the survey restores it with git checkout")
    original = source.read_text()
    if original.count(text) != 1:
        return f"{name}: the text to mutate is not in {path} once (the code moved?)"
    source.write_text(original.replace(text, replacement, 1))
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", *tests, "-q", "-rf", "-p", "no:cacheprovider"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
    finally:
        subprocess.run(["git", "-C", str(REPO), "checkout", "--", path], check=True)
    failed = [line for line in run.stdout.splitlines() if line.startswith("FAILED")]
    verdict = "caught" if failed else "NOT CAUGHT"
    return "\n".join([f"{name} ({path}): {verdict}", *(f"  {line}" for line in failed)])


if __name__ == "__main__":
    for name in sys.argv[1:] or MUTATIONS:
        print(survey(name), flush=True)
