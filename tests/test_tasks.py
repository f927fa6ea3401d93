"""``mirprobe.tasks``: label encoding and the split arrays the probe stages train on."""

import numpy as np
import pandas as pd
import pytest

from mirprobe.errors import DataError
from mirprobe.tasks import encode_labels, split_arrays

#: label names in a deliberately unsorted order: the encoding must follow this order,
#: which is the one the metrics decode output columns with
KEYS = ["G major", "C major", "A minor", "Eb minor"]


def test_class_indices_follow_the_order_of_the_task_labels():
    strings = ["A minor", "G major", "Eb minor", "C major", "G major"]
    expected = [KEYS.index(s) for s in strings]
    assert expected == [2, 0, 3, 1, 0]
    for task_type in ("key", "multiclass"):
        y = encode_labels(task_type, strings, labels=KEYS)
        assert y.dtype == np.int64
        assert y.tolist() == expected
        # decoding with the labels gives the strings back
        assert [KEYS[i] for i in y] == strings


def test_multilabel_columns_follow_the_order_of_the_task_tags():
    tags = ["rock", "ambient", "jazz"]
    y = encode_labels("multilabel", ["jazz|rock", "", "ambient"], labels=tags)
    assert y.dtype == np.uint8
    assert y.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]


def test_regression_targets_are_the_parsed_floats_in_order():
    y = encode_labels("regression", ["0.25|-1.5", "3|0"], labels=["valence", "arousal"])
    assert y.dtype == np.float32
    assert y.tolist() == [[0.25, -1.5], [3.0, 0.0]]


def test_an_unknown_label_is_named():
    with pytest.raises(DataError, match=r"\['F major'\] are not among the task's labels"):
        encode_labels("key", ["C major", "F major"], labels=KEYS)


def _metadata():
    rows = []
    for i, split in enumerate(["train"] * 4 + ["valid"] * 3 + ["test"] * 3):
        rows.append(
            {
                "clip_id": f"c{i}",
                "split": split,
                "label": KEYS[(3 * i) % 4],
                "song_id": f"s{i // 2}",
            }
        )
    return pd.DataFrame(rows)


def test_split_arrays_align_features_labels_and_songs_by_clip_id():
    metadata = _metadata()
    # feature rows in another order than the metadata, each row tagged with its clip number
    order = [7, 2, 9, 0, 5, 1, 8, 3, 6, 4]
    clip_ids = [f"c{i}" for i in order]
    X = np.array([[i, 10 * i] for i in order], dtype=np.float32)
    splits = split_arrays(metadata, clip_ids, X, task_type="key", labels=KEYS)
    assert list(splits) == ["train", "valid", "test"]
    for split, numbers in (("train", [0, 1, 2, 3]), ("valid", [4, 5, 6]), ("test", [7, 8, 9])):
        arrays = splits[split]
        assert arrays.clip_ids == [f"c{i}" for i in numbers]
        assert arrays.X.tolist() == [[i, 10 * i] for i in numbers]
        assert arrays.y.tolist() == [(3 * i) % 4 for i in numbers]
        assert arrays.groups == [f"s{i // 2}" for i in numbers]


def test_a_clip_neither_embedded_nor_excluded_is_an_error_naming_it():
    metadata = _metadata()
    clip_ids = [f"c{i}" for i in range(10) if i != 5]
    X = np.zeros((9, 2), dtype=np.float32)
    with pytest.raises(
        DataError, match=r"1 clips have no features and were not excluded: \['c5'\]"
    ):
        split_arrays(metadata, clip_ids, X, task_type="key", labels=KEYS)
    # excluded with a reason, it is left out of its split and nothing else changes
    splits = split_arrays(
        metadata, clip_ids, X, task_type="key", labels=KEYS, excluded={"c5": "unreadable"}
    )
    assert splits["valid"].clip_ids == ["c4", "c6"]
    assert sum(len(s.clip_ids) for s in splits.values()) == 9


def test_features_of_clips_absent_from_the_metadata_are_an_error():
    metadata = _metadata()
    clip_ids = [f"c{i}" for i in range(10)] + ["stray"]
    with pytest.raises(DataError, match=r"absent from the metadata: \['stray'\]"):
        split_arrays(metadata, clip_ids, np.zeros((11, 2)), task_type="key", labels=KEYS)


def test_duplicate_clip_ids_are_an_error():
    metadata = _metadata()
    clip_ids = [f"c{i}" for i in range(10)] + ["c3"]
    with pytest.raises(DataError, match="duplicate clip ids"):
        split_arrays(metadata, clip_ids, np.zeros((11, 2)), task_type="key", labels=KEYS)


def test_a_split_left_without_clips_is_an_error():
    metadata = _metadata()
    clip_ids = [f"c{i}" for i in range(7)]
    with pytest.raises(DataError, match="split 'test' has no clips with features"):
        split_arrays(
            metadata,
            clip_ids,
            np.zeros((7, 2)),
            task_type="key",
            labels=KEYS,
            excluded={f"c{i}": "unreadable" for i in (7, 8, 9)},
        )
