"""What the probe stages (``mirprobe.stages.train_probe`` / ``evaluate_probe``) are
given in the workflow, built for tests (test_stages.py, test_probes.py, test_seeds.py): a
probe config and a feature shard that carries its dataset, as the extract stage writes
it; and the two stages run on them, as the workflow runs them."""

import json

import numpy as np

#: one linear probe, as the workflow's probe config gives it to the stages
LINEAR_PROBE_CONFIG = {
    "grid": {
        "standardize": [True],
        "batch_size": [16],
        "hidden_sizes": [[]],
        "learning_rate": [0.01],
        "l2": [0.0],
        "dropout": [0.0],
    },
    "eval_every": 8,
    "patience": 4,
    "max_steps": 200,
    "trainer": "serial",
}


def write_feature_shard(path, *, task_type, labels, clips, layers, excluded=()):
    """Write the feature shard ``path`` (.npz) and return the stages' inputs (its
    first layer chosen).

    ``clips``: dicts with clip_id, split, label and song_id, the dataset's clips in
    its row order; ``excluded``: clip ids excluded at resampling (``<clip_id>.wav``,
    unreadable), which have no features; ``layers``: ``{name: (n, d) array}``, one row
    per clip not excluded. The shard carries the dataset as :mod:`mirprobe.features`
    does: the probe stages read features only.
    """
    excluded = set(excluded)
    dataset = {
        "prepare": {"task_type": task_type, "labels": labels, "n_clips": len(clips)},
        "resample": [{"stage": "resample", "wall_s": 0.0, "shard": 0}],
        "clips": [
            {"row": i, **{k: c[k] for k in ("clip_id", "split", "label", "song_id")}}
            for i, c in enumerate(clips)
        ],
        "excluded_at_resampling": [
            {"clip_id": c["clip_id"], "source": f"{c['clip_id']}.wav", "reason": "unreadable"}
            for c in clips
            if c["clip_id"] in excluded
        ],
    }
    np.savez(
        path,
        clip_ids=np.array([c["clip_id"] for c in clips if c["clip_id"] not in excluded]),
        profile=np.array("{}"),
        excluded=np.array("[]"),
        dataset=np.array(json.dumps(dataset)),
        **{f"layer:{name}": features for name, features in layers.items()},
    )
    return {"feature_paths": [path], "layer": next(iter(layers)), "device": "cpu"}


def run_probe_stages(directory, inputs, probe_config=LINEAR_PROBE_CONFIG, *, seed=0, **evaluate):
    """Rules train_probe then evaluate_probe on ``inputs`` (see
    :func:`write_feature_shard`), writing probe.pt, train.json and test.json in
    ``directory``; ``evaluate``: evaluate_probe's other arguments (predictions_path).
    Returns the two records."""
    from mirprobe.stages import evaluate_probe, train_probe

    trained = train_probe(
        **inputs,
        probe_config=probe_config,
        seed=seed,
        probe_path=directory / "probe.pt",
        record_path=directory / "train.json",
    )
    evaluated = evaluate_probe(
        **inputs,
        probe_path=directory / "probe.pt",
        record_path=directory / "test.json",
        **evaluate,
    )
    return trained, evaluated
