"""Bootstrap intervals and paired differences against cases with a known answer.

Resampling n clips, a probe right on a fraction p of them is right on
Binomial(n, p) / n of a resample: the percentile interval must be that
distribution's quantiles. For key the unit is a song, so the spread is that of
the number of songs, not of clips.
"""

import numpy as np
import pytest
from scipy import stats

from mirprobe.bootstrap import cell_intervals, paired_difference
from mirprobe.errors import DataError
from mirprobe.predictions import cell_metrics, read_predictions, write_predictions

KEYS = ["C major", "G major", "A minor", "E minor"]


def _multiclass(tmp_path, correct, *, name="cell.npz", n_classes=3):
    """Predictions of a probe right on the clips where ``correct`` is True."""
    n = len(correct)
    target = np.arange(n) % n_classes
    guess = np.where(correct, target, (target + 1) % n_classes)
    scores = np.eye(n_classes)[guess] * 2.0 - 1.0
    ids = [f"clip{i:04d}" for i in range(n)]
    path = tmp_path / name
    write_predictions(
        path,
        task_type="multiclass",
        labels=[f"c{k}" for k in range(n_classes)],
        clip_ids=ids,
        song_ids=[None] * n,
        target=target,
        scores=scores,
        ensemble="mean_prob",
        splits={"train": ["t0"], "valid": ["v0"], "test": ids},
    )
    return read_predictions(path)


def test_the_file_holds_what_was_written_and_rescores_to_the_same_metrics(tmp_path):
    correct = np.arange(50) % 5 != 0
    p = _multiclass(tmp_path, correct)
    assert p.clip_id[3] == "clip0003" and p.song_id[3] == ""
    assert p.decision.tolist() == p.scores.argmax(axis=1).tolist()
    assert p.splits == {"train": ["t0"], "valid": ["v0"], "test": p.clip_id.tolist()}
    assert cell_metrics(p)["accuracy"] == pytest.approx(0.8)


def test_accuracy_interval_is_the_binomial_one(tmp_path):
    n, k = 400, 316  # 79 %
    p = _multiclass(tmp_path, np.arange(n) < k)
    got = cell_intervals(p, ["accuracy"], resamples=4000, confidence=0.95, seed=0)["accuracy"]
    low, high = stats.binom.ppf([0.025, 0.975], n, k / n) / n
    assert got["value"] == pytest.approx(k / n)
    # the percentile of 4,000 draws sits within a clip or so of the exact quantile
    assert got["low"] == pytest.approx(low, abs=1.5 / n)
    assert got["high"] == pytest.approx(high, abs=1.5 / n)
    assert high - low == pytest.approx(2 * 1.96 * np.sqrt(0.79 * 0.21 / n), abs=2 / n)


def test_the_same_seed_gives_the_same_interval_and_confidence_narrows_it(tmp_path):
    p = _multiclass(tmp_path, np.arange(100) % 3 != 0)
    a = cell_intervals(p, ["accuracy"], resamples=500, confidence=0.95, seed=7)
    b = cell_intervals(p, ["accuracy"], resamples=500, confidence=0.95, seed=7)
    c = cell_intervals(p, ["accuracy"], resamples=500, confidence=0.5, seed=7)
    assert a == b
    assert a["accuracy"]["low"] < c["accuracy"]["low"] < c["accuracy"]["high"]
    assert c["accuracy"]["high"] < a["accuracy"]["high"]


def _key(tmp_path, song_correct, clips_per_song):
    n_songs = len(song_correct)
    # songs in C major or A minor; a wrong one is called a fifth above (G major,
    # E minor): mir_eval's weighted score 0.5
    song_key = 2 * (np.arange(n_songs) % 2)
    guess = np.where(song_correct, song_key, song_key + 1)
    target = np.repeat(song_key, clips_per_song)
    scores = np.repeat(np.eye(len(KEYS))[guess], clips_per_song, axis=0)
    ids = [f"clip{i:04d}" for i in range(len(target))]
    path = tmp_path / "key.npz"
    write_predictions(
        path,
        task_type="key",
        labels=KEYS,
        clip_ids=ids,
        song_ids=[f"song{s:03d}" for s in np.repeat(np.arange(n_songs), clips_per_song)],
        target=target,
        scores=scores,
        ensemble="mean_prob",
        splits={"train": [], "valid": [], "test": ids},
    )
    return read_predictions(path)


def test_key_resamples_songs_not_clips(tmp_path):
    n_songs = 100
    p = _key(tmp_path, np.arange(n_songs) < 70, clips_per_song=4)
    got = cell_intervals(p, ["accuracy", "weighted_score"], resamples=4000, confidence=0.95, seed=0)
    low, high = stats.binom.ppf([0.025, 0.975], n_songs, 0.7) / n_songs
    assert got["accuracy"]["value"] == pytest.approx(0.7)
    assert got["accuracy"]["low"] == pytest.approx(low, abs=1.5 / n_songs)
    assert got["accuracy"]["high"] == pytest.approx(high, abs=1.5 / n_songs)
    # a wrong song scores 0.5 (fifth): weighted = 0.5 + accuracy / 2
    assert got["weighted_score"]["value"] == pytest.approx(0.85)
    assert got["weighted_score"]["low"] == pytest.approx(0.5 + got["accuracy"]["low"] / 2)


def test_paired_difference_of_a_constructed_pair(tmp_path):
    """B is A with m right clips made wrong: A - B on a resample is the number of
    those m clips drawn, over n, i.e. Binomial(n, m / n) / n."""
    n, m = 300, 15
    correct_a = np.arange(n) % 4 != 0
    correct_b = correct_a.copy()
    correct_b[np.flatnonzero(correct_a)[:m]] = False
    a = _multiclass(tmp_path, correct_a, name="a.npz")
    b = _multiclass(tmp_path, correct_b, name="b.npz")
    got = paired_difference(a, b, ["accuracy"], resamples=4000, confidence=0.95, seed=0)
    low, high = stats.binom.ppf([0.025, 0.975], n, m / n) / n
    assert got["accuracy"]["difference"] == pytest.approx(m / n)
    assert got["accuracy"]["low"] == pytest.approx(low, abs=1.5 / n)
    assert got["accuracy"]["high"] == pytest.approx(high, abs=1.5 / n)
    # unpaired, the two intervals overlap; paired, the difference excludes 0
    assert got["accuracy"]["low"] > 0
    same = paired_difference(a, a, ["accuracy"], resamples=200, confidence=0.95, seed=0)
    assert same["accuracy"] == {"difference": 0.0, "low": 0.0, "high": 0.0}


def test_a_pair_of_other_test_sets_is_refused(tmp_path):
    a = _multiclass(tmp_path, np.ones(10, bool), name="a.npz")
    b = _multiclass(tmp_path, np.ones(12, bool), name="b.npz")
    with pytest.raises(DataError, match="same clips"):
        paired_difference(a, b, ["accuracy"], resamples=10, confidence=0.95, seed=0)


def test_a_file_lacking_a_field_is_named(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, clip_id=np.array(["a"]))
    with pytest.raises(DataError, match=r"bad\.npz: predictions file lacks"):
        read_predictions(path)


def _cells(tmp_path):
    """Two rows of one test set: A right on 80 % of 200 clips, B on 70 %."""
    from mirprobe.bootstrap import table_uncertainty

    a = _multiclass(tmp_path, np.arange(200) % 10 < 8, name="a.npz")
    b = _multiclass(tmp_path, np.arange(200) % 10 < 7, name="b.npz")
    predictions = {(("a", "0"), "gtzan"): a, (("b", "0"), "gtzan"): b}
    records = {
        key: {
            "metrics": {"accuracy": cell_metrics(p)["accuracy"], "primary": 0},
            "clip_counts": {"train": 1, "valid": 1, "test": 200},
        }
        for key, p in predictions.items()
    }
    tasks = [("gtzan", "GTZAN", ["accuracy"])]
    rows = [(("a", "0"), "Model A"), (("b", "0"), "Model B")]
    settings = {"resamples": 500, "confidence": 0.95, "seed": 0}
    intervals, comparisons = table_uncertainty(
        predictions, tasks=tasks, rows=rows, settings=settings
    )
    return records, tasks, rows, {**settings, "intervals": intervals, "comparisons": comparisons}


def test_the_table_shows_intervals_and_keeps_its_columns(tmp_path):
    import csv

    from mirprobe.tables import write_tables

    records, tasks, rows, uncertainty = _cells(tmp_path)
    plain = {f: tmp_path / f"plain.{f}" for f in ("md", "csv", "tex")}
    shown = {f: tmp_path / f"shown.{f}" for f in ("md", "csv", "tex")}
    write_tables(records, tasks=tasks, rows=rows, paths=plain)
    write_tables(records, tasks=tasks, rows=rows, paths=shown, uncertainty=uncertainty)
    plain_rows = list(csv.reader(plain["csv"].open()))
    shown_rows = list(csv.reader(shown["csv"].open()))
    # the existing columns as they were, the interval columns after them
    assert [r[: len(plain_rows[0])] for r in shown_rows] == plain_rows
    assert shown_rows[0][len(plain_rows[0]) :] == ["GTZAN Acc 95% low", "GTZAN Acc 95% high"]
    a = uncertainty["intervals"][(("a", "0"), "gtzan")]["accuracy"]
    assert shown_rows[1][1] == "80.0"
    assert shown_rows[1][-2:] == [f"{100 * a['low']:.1f}", f"{100 * a['high']:.1f}"]
    md = shown["md"].read_text()
    assert f"| 80.0 [{100 * a['low']:.1f}, {100 * a['high']:.1f}]" in md
    assert f"80.0 [{100 * a['low']:.1f}, {100 * a['high']:.1f}]" in shown["tex"].read_text()
    # the default comparison: each row against the best row of the task
    (line,) = [x for x in md.splitlines() if " − " in x]
    c = uncertainty["comparisons"][0]
    assert (c["a"], c["b"], c["metric"]) == ("Model A", "Model B", "accuracy")
    assert c["difference"] == pytest.approx(0.1)
    assert (
        line
        == f"- Model A − Model B on GTZAN (accuracy): +10.0 [{100 * c['low']:+.1f}, {100 * c['high']:+.1f}]"
    )
    assert 0 < c["low"] < 0.1 < c["high"]


def test_a_configured_pair_is_compared_and_a_wrong_name_lists_the_rows(tmp_path):
    from mirprobe.bootstrap import table_uncertainty

    a = _multiclass(tmp_path, np.arange(50) % 2 == 0, name="a.npz")
    b = _multiclass(tmp_path, np.arange(50) % 5 == 0, name="b.npz")
    predictions = {(("a", "0"), "t"): a, (("b", "0"), "t"): b}
    kwargs = dict(
        tasks=[("t", "T", ["accuracy"])],
        rows=[(("a", "0"), "A"), (("b", "0"), "B")],
        settings={"resamples": 50, "confidence": 0.9, "seed": 1},
    )
    _, comparisons = table_uncertainty(predictions, pairs=[{"a": "b", "b": "a"}], **kwargs)
    assert [(c["a"], c["b"]) for c in comparisons] == [("A", "B"), ("B", "A")]
    assert comparisons[1]["difference"] == pytest.approx(-comparisons[0]["difference"])
    with pytest.raises(
        DataError, match=r"'c' names no single table row; choose among \['a/0', 'b/0'\]"
    ):
        table_uncertainty(predictions, pairs=[{"a": "c", "b": "a"}], **kwargs)
