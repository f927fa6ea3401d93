"""The report's figures: what they draw, and that they are PNG files."""

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="matplotlib (requirements.txt) is not installed")

from mirprobe.errors import DataError  # noqa: E402
from mirprobe.plots import confusion, confusion_figure, curve_figure, layer_figure  # noqa: E402
from mirprobe.predictions import read_predictions, write_predictions  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _write(tmp_path, task_type, labels, target, scores, songs):
    path = tmp_path / f"{task_type}.npz"
    ids = [f"c{i}" for i in range(len(target))]
    write_predictions(
        path,
        task_type=task_type,
        labels=labels,
        clip_ids=ids,
        song_ids=songs,
        target=target,
        scores=scores,
        ensemble="mean_prob",
        splits={"train": [], "valid": [], "test": ids},
    )
    return read_predictions(path)


def test_a_multiclass_confusion_counts_clips(tmp_path):
    target = np.array([0, 0, 1, 1, 2, 2])
    decided = np.array([0, 1, 1, 1, 2, 0])
    p = _write(tmp_path, "multiclass", ["a", "b", "c"], target, np.eye(3)[decided], [None] * 6)
    matrix = confusion_figure(p, tmp_path / "cm.png", title="T")
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert (tmp_path / "cm.png").read_bytes()[:8] == PNG


def test_a_key_confusion_counts_songs_by_their_pooled_decision(tmp_path):
    keys = ["C major", "G major"]
    # song s0 (C): two clips say C, one G -> C; song s1 (G): one clip, says C
    target = np.array([0, 0, 0, 1])
    scores = np.array([[3.0, 0], [3.0, 0], [0, 1.0], [2.0, 0]])
    p = _write(tmp_path, "key", keys, target, scores, ["s0", "s0", "s0", "s1"])
    matrix, labels, unit = confusion(p)
    assert (matrix.tolist(), labels, unit) == ([[1, 0], [1, 0]], keys, "songs")


def test_no_confusion_matrix_for_regression(tmp_path):
    p = _write(tmp_path, "regression", ["v"], np.zeros((2, 1)), np.zeros((2, 1)), [None] * 2)
    with pytest.raises(DataError, match="regression"):
        confusion(p)


def test_the_layer_curve_marks_the_layer_chosen_on_validation(tmp_path):
    def record(layer, valid, test):
        return {
            "cell": {"layer": layer},
            "valid_metrics": {"primary": valid},
            "test_metrics": {"primary": test},
        }

    records = [record("0", 0.5, 0.6), record("6", 0.7, 0.65), record("12", 0.7, 0.8)]
    layers, valid, test, chosen = layer_figure(records, tmp_path / "layers.png", title="T")
    # the tie at 0.7 goes to the first layer in config order, as the table's note
    assert (layers, chosen) == (["0", "6", "12"], "6")
    assert test == [0.6, 0.65, 0.8]
    assert (tmp_path / "layers.png").read_bytes()[:8] == PNG
    with pytest.raises(DataError, match="two layers"):
        layer_figure(records[:1], tmp_path / "one.png", title="T")


def _cell_record(curve, best_step, stopped_by="patience"):
    return {
        "cell": {"task": "synth_key", "row": "Chroma", "layer": "stats"},
        "selected_probe": {"curve": curve, "best_step": best_step, "stopped_by": stopped_by},
    }


def test_the_selected_probes_curve_marks_the_kept_step(tmp_path):
    curve = [[0, 0.1], [8, 0.4], [16, 0.55], [24, 0.5], [32, 0.52]]
    record = _cell_record(curve, 16)
    steps, scores, best, stopped_by = curve_figure(record, tmp_path / "curve.png", title="T")
    assert steps == [0, 8, 16, 24, 32] and scores == [0.1, 0.4, 0.55, 0.5, 0.52]
    assert (best, stopped_by) == (16, "patience")
    assert (tmp_path / "curve.png").read_bytes()[:8] == PNG


def test_a_record_without_a_curve_or_with_a_foreign_best_step_is_an_error(tmp_path):
    record = _cell_record([], 0)
    del record["selected_probe"]["curve"]
    with pytest.raises(DataError, match="synth_key / Chroma holds no validation curve"):
        curve_figure(record, tmp_path / "a.png", title="T")
    with pytest.raises(DataError, match="best step 12"):
        curve_figure(_cell_record([[0, 0.1], [8, 0.2]], 12), tmp_path / "b.png", title="T")
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()
