"""The probe stages of ``mirprobe.stages`` (``train_probe``, ``evaluate_probe``), checked
at the value level: every score a stage record holds is recomputed here, independently
(scikit-learn, mir_eval and numpy on the saved probe's own predictions), from the split
it must come from. See tests/MUTATIONS.md for the bugs these tests are known to catch.
"""

import json

import mir_eval
import numpy as np
import pandas as pd
import pytest
from stage_inputs import LINEAR_PROBE_CONFIG, run_probe_stages, write_feature_shard

from mirprobe.errors import DataError

#: key labels deliberately not in sorted order, so an encoding that sorted them would
#: mislabel every prediction the metrics decode
KEYS = ["G major", "C major", "A minor"]
N_FEATURES = 6


def write_stage_inputs(tmp_path, *, task_type, labels, clips, excluded=()):
    """metadata.csv, prepare.json, one resampled-shard manifest and one feature shard,
    as the workflow's earlier stages write them. ``clips``: dicts with clip_id, split,
    label, song_id and x (the feature vector); ``excluded``: clip ids the manifest marks
    excluded (they have metadata but no features)."""
    from mirprobe.datasets.base import write_metadata

    excluded = set(excluded)
    rows = [
        {
            "clip_id": c["clip_id"],
            "audio_path": f"{c['clip_id']}.wav",
            "offset": 0.0,
            "duration": "",
            "split": c["split"],
            "label": c["label"],
            "song_id": c["song_id"],
        }
        for c in clips
    ]
    write_metadata(pd.DataFrame(rows), tmp_path / "metadata.csv")
    (tmp_path / "prepare.json").write_text(json.dumps({"task_type": task_type, "labels": labels}))
    shard = tmp_path / "shard-000"
    shard.mkdir()
    pd.DataFrame(
        {
            "clip_id": [r["clip_id"] for r in rows],
            "source": [r["audio_path"] for r in rows],
            "status": ["excluded" if r["clip_id"] in excluded else "ok" for r in rows],
            "reason": ["unreadable" if r["clip_id"] in excluded else "" for r in rows],
            "n_samples": 100,
        }
    ).to_csv(shard / "manifest.tsv", sep="\t", index=False)
    (shard / "stage.json").write_text(json.dumps({"stage": "resample", "wall_s": 0.0}))
    embedded = [c for c in clips if c["clip_id"] not in excluded]
    return write_feature_shard(
        tmp_path / "features.npz",
        task_type=task_type,
        labels=labels,
        clips=clips,
        layers={"x": np.stack([c["x"] for c in embedded]).astype(np.float32)},
        excluded=excluded,
    )


def run_stages(tmp_path, inputs, probe_config=LINEAR_PROBE_CONFIG):
    trained, evaluated = run_probe_stages(tmp_path, inputs, probe_config)
    # the records on disk are the ones returned
    assert json.loads((tmp_path / "train.json").read_text())["selected"] == json.loads(
        json.dumps(trained["selected"])
    )
    assert json.loads((tmp_path / "test.json").read_text())["metrics"] == evaluated["metrics"]
    return trained, evaluated


def split_of(clips, split):
    chosen = [c for c in clips if c["split"] == split]
    return (
        np.stack([c["x"] for c in chosen]).astype(np.float32),
        [c["label"] for c in chosen],
        [c["song_id"] for c in chosen],
    )


def saved_probe_scores(tmp_path, X):
    from mirprobe.probes import load_probe

    return load_probe(tmp_path / "probe.pt").predict_scores(X)


# -- key: song pooling, the ensemble chosen on validation, label order ------------------


def pool_songs(scores, songs, strategy):
    """``{song: predicted class index}``, pooled as jukemir's four strategies do
    (vote ties go to the lowest class index)."""
    out = {}
    for song in sorted(set(songs)):
        s = scores[[i for i, g in enumerate(songs) if g == song]].astype(np.float64)
        if strategy == "vote":
            pooled = np.bincount(s.argmax(axis=1), minlength=s.shape[1])
        elif strategy == "max_logit":
            pooled = s.max(axis=0)
        elif strategy == "mean_logit":
            pooled = s.mean(axis=0)
        else:
            e = np.exp(s - s.max(axis=1, keepdims=True))
            pooled = (e / e.sum(axis=1, keepdims=True)).mean(axis=0)
        out[song] = int(np.argmax(pooled))
    return out


def key_scores_by_hand(scores, keys, songs, strategy):
    """Song-level mir_eval weighted score and accuracy, the reference key read from the
    metadata's label strings and the estimate decoded as ``KEYS[output index]``."""
    true = dict(zip(songs, keys, strict=True))
    pred = {song: KEYS[i] for song, i in pool_songs(scores, songs, strategy).items()}
    weighted = [mir_eval.key.weighted_score(true[s], pred[s]) for s in sorted(true)]
    return {
        "weighted_score": float(np.mean(weighted)),
        "accuracy": float(np.mean([true[s] == pred[s] for s in sorted(true)])),
    }


def key_clips(scenario, seed=0):
    """Songs of three clips. Train: clean. ``conflict`` songs have two weak clips
    pointing at key A and one strong clip at key B: vote says A, the other three
    poolings say B. Validation decides which is right (``vote``: A, all tie and vote,
    the first strategy, is chosen; ``pool``: B, vote loses), and test holds the same
    kind of conflict songs, so the pooling actually used changes the test score. Test
    also holds songs whose features point at the wrong key, so no score on test can
    equal the clean validation's."""
    rng = np.random.default_rng(seed)
    clips = []

    def song(split, name, key, clip_keys, strengths):
        for j, (k, strength) in enumerate(zip(clip_keys, strengths, strict=True)):
            x = 0.2 * rng.standard_normal(N_FEATURES)
            x[KEYS.index(k)] += strength
            clips.append(
                {"clip_id": f"{name}-{j}", "split": split, "label": key, "song_id": name, "x": x}
            )

    pairs = [("C major", "G major"), ("G major", "A minor"), ("A minor", "C major")]
    for i in range(24):
        key = KEYS[i % 3]
        song("train", f"tr{i:02d}", key, [key] * 3, [3.0] * 3)
    for i, (a, b) in enumerate(pairs * 2):
        true = a if scenario == "vote" else b
        song("valid", f"va{i:02d}", true, [a, a, b], [0.5, 0.5, 6.0])
    for i in range(6):
        key = KEYS[i % 3]
        song("valid", f"vc{i:02d}", key, [key] * 3, [3.0] * 3)
    for i, (a, b) in enumerate(pairs * 2):
        true = a if scenario == "vote" else b
        song("test", f"te{i:02d}", true, [a, a, b], [0.5, 0.5, 6.0])
    for i in range(6):
        key = KEYS[i % 3]
        song("test", f"tc{i:02d}", key, [key] * 3, [3.0] * 3)
    for i, (a, b) in enumerate(pairs):
        song("test", f"tw{i:02d}", a, [b] * 3, [3.0] * 3)  # features of the wrong key
    return clips


@pytest.mark.parametrize("scenario", ["vote", "pool"])
def test_key_stages_score_songs_with_the_pooling_chosen_on_validation(tmp_path, scenario):
    clips = key_clips(scenario)
    inputs = write_stage_inputs(tmp_path, task_type="key", labels=KEYS, clips=clips)
    trained, evaluated = run_stages(tmp_path, inputs)

    # validation: the saved probe's valid scores, pooled by each strategy; the chosen one
    # is the best (the first on a tie), and its scores are the record's
    X_valid, valid_keys, valid_songs = split_of(clips, "valid")
    valid_scores = saved_probe_scores(tmp_path, X_valid)
    by_strategy = {
        s: key_scores_by_hand(valid_scores, valid_keys, valid_songs, s)
        for s in ("vote", "max_logit", "mean_logit", "mean_prob")
    }
    best = max(by_strategy, key=lambda s: by_strategy[s]["weighted_score"])  # first of ties
    assert best == "vote" if scenario == "vote" else best != "vote"
    selected = trained["selected"]
    assert selected["ensemble"] == best
    assert selected["valid_metrics"]["weighted_score"] == pytest.approx(
        by_strategy[best]["weighted_score"], abs=1e-12
    )
    assert selected["valid_metrics"]["accuracy"] == pytest.approx(by_strategy[best]["accuracy"])
    assert selected["valid_metrics"]["primary"] == selected["valid_metrics"]["weighted_score"]

    # test: the same pooling on the saved probe's test scores, one score per song
    X_test, test_keys, test_songs = split_of(clips, "test")
    test_scores = saved_probe_scores(tmp_path, X_test)
    expected = key_scores_by_hand(test_scores, test_keys, test_songs, best)
    metrics = evaluated["metrics"]
    assert metrics["weighted_score"] == pytest.approx(expected["weighted_score"], abs=1e-12)
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)
    assert metrics["primary"] == metrics["weighted_score"]
    assert metrics["clip_accuracy"] == pytest.approx(
        np.mean([KEYS[i] == k for i, k in zip(test_scores.argmax(axis=1), test_keys, strict=True)])
    )
    # the case discriminates: another pooling, or none, would score test differently
    other = "mean_prob" if scenario == "vote" else "vote"
    assert key_scores_by_hand(test_scores, test_keys, test_songs, other) != expected
    clip_ids = [c["clip_id"] for c in clips if c["split"] == "test"]
    per_clip = key_scores_by_hand(test_scores, test_keys, clip_ids, best)
    assert per_clip["weighted_score"] != pytest.approx(expected["weighted_score"])
    # and test differs from validation, so a train stage validating on test would show
    assert expected["weighted_score"] != pytest.approx(by_strategy[best]["weighted_score"])
    assert trained["clip_counts"] == {"train": 72, "valid": 36, "test": 45}


# -- the other task types ------------------------------------------------------------


def simple_clips(task_type, labels, *, seed=0):
    """60 train, 30 valid and 30 test clips with a learnable signal; a third of the test
    labels are replaced, so test scores differ from validation's."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(120):
        split = "train" if i < 60 else "valid" if i < 90 else "test"
        k = int(rng.integers(3))
        x = 0.5 * rng.standard_normal(N_FEATURES)
        x[k] += 2.0
        if split == "test" and i % 3 == 0:
            k = (k + 1) % 3
        if task_type == "multiclass":
            label = labels[k]
        elif task_type == "multilabel":
            label = "|".join(labels[j] for j in range(3) if j != k)
        else:
            label = f"{0.5 * k + 0.1 * x[4]}|{-0.25 * k}"
        clips.append(
            {"clip_id": f"c{i:03d}", "split": split, "label": label, "song_id": f"c{i:03d}", "x": x}
        )
    return clips


def independent_metrics(task_type, labels, label_strings, scores):
    """The stage's metrics from scikit-learn, the targets parsed from the label strings."""
    from sklearn.metrics import accuracy_score, average_precision_score, r2_score, roc_auc_score

    if task_type == "multiclass":
        return {"accuracy": accuracy_score(label_strings, [labels[i] for i in scores.argmax(1)])}
    if task_type == "multilabel":
        y = np.array([[name in s.split("|") for name in labels] for s in label_strings], int)
        return {
            "roc_auc_macro": roc_auc_score(y, scores, average="macro"),
            "ap_macro": average_precision_score(y, scores, average="macro"),
        }
    y = np.array([[float(v) for v in s.split("|")] for s in label_strings])
    per_output = r2_score(y, scores, multioutput="raw_values")
    return {
        **{f"r2_{n}": v for n, v in zip(labels, per_output, strict=True)},
        "r2_mean": per_output.mean(),
    }


@pytest.mark.parametrize(
    "task_type, labels, primary",
    [
        ("multiclass", ["c", "a", "b"], "accuracy"),
        ("multilabel", ["z", "x", "y"], "roc_auc_macro"),
        ("regression", ["valence", "arousal"], "r2_mean"),
    ],
)
def test_stages_score_valid_on_valid_and_test_on_test(tmp_path, task_type, labels, primary):
    clips = simple_clips(task_type, labels)
    inputs = write_stage_inputs(tmp_path, task_type=task_type, labels=labels, clips=clips)
    trained, evaluated = run_stages(tmp_path, inputs)
    found = {}
    for split, metrics in (
        ("valid", trained["selected"]["valid_metrics"]),
        ("test", evaluated["metrics"]),
    ):
        X, label_strings, _ = split_of(clips, split)
        expected = independent_metrics(
            task_type, labels, label_strings, saved_probe_scores(tmp_path, X)
        )
        for name, value in expected.items():
            assert metrics[name] == pytest.approx(value, abs=1e-6), (split, name)
        assert metrics["primary"] == metrics[primary]
        found[split] = expected[primary]
    # validation and test differ, so scoring one in place of the other cannot pass
    assert abs(found["valid"] - found["test"]) > 0.05
    assert trained["primary_metric"] == primary
    assert trained["ranking"][0]["valid_primary"] == trained["selected"]["valid_metrics"]["primary"]


# -- every clip accounted for ------------------------------------------------------


def test_a_clip_without_features_that_was_not_excluded_stops_the_stage(tmp_path):
    from mirprobe.stages import train_probe

    clips = simple_clips("multiclass", ["c", "a", "b"])
    inputs = write_stage_inputs(
        tmp_path, task_type="multiclass", labels=["c", "a", "b"], clips=clips
    )
    # drop one clip from the feature shard behind the manifest's back
    with np.load(inputs["feature_paths"][0]) as shard:
        keep = shard["clip_ids"] != "c070"
        np.savez(
            inputs["feature_paths"][0],
            clip_ids=shard["clip_ids"][keep],
            profile=shard["profile"],
            excluded=shard["excluded"],
            dataset=shard["dataset"],
            **{"layer:x": shard["layer:x"][keep]},
        )
    with pytest.raises(DataError, match=r"1 clips have no features and were not excluded.*c070"):
        train_probe(
            **inputs,
            probe_config=LINEAR_PROBE_CONFIG,
            seed=0,
            probe_path=tmp_path / "probe.pt",
            record_path=tmp_path / "train.json",
        )
    assert not (tmp_path / "train.json").exists()


def test_excluded_clips_are_left_out_and_counted(tmp_path):
    clips = simple_clips("multiclass", ["c", "a", "b"])
    inputs = write_stage_inputs(
        tmp_path,
        task_type="multiclass",
        labels=["c", "a", "b"],
        clips=clips,
        excluded=["c010", "c070", "c100"],
    )
    trained, evaluated = run_stages(tmp_path, inputs)
    assert (
        trained["clip_counts"] == evaluated["clip_counts"] == {"train": 59, "valid": 29, "test": 29}
    )
    assert [e["clip_id"] for e in trained["excluded"]] == ["c010", "c070", "c100"]
    assert evaluated["n_excluded"] == 3
    X, label_strings, _ = split_of([c for c in clips if c["clip_id"] != "c100"], "test")
    expected = independent_metrics(
        "multiclass", ["c", "a", "b"], label_strings, saved_probe_scores(tmp_path, X)
    )
    assert evaluated["metrics"]["accuracy"] == pytest.approx(expected["accuracy"])
