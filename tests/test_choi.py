"""Choi et al. 2017 with its real weights, as jukemir ran it: the PyTorch network
against an independent tf_keras forward pass on the real fixture audio, the
batch statistics, jukemir's batches and the strict HDF5 loader."""

import hashlib
import os

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")

from conftest import fixture_path  # noqa: E402
from mirprobe.errors import ModelError  # noqa: E402
from mirprobe.extractors.choi import (  # noqa: E402
    DEFAULT_WEIGHTS,
    POOLINGS,
    Choi,
    jukemir_batches,
)

CLIPS = {
    "jazz": "Kevin_MacLeod_-_Vibe_Ace.ogg",
    "strings": "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg",
    "trumpet": "sorohanro_-_solo-trumpet-06.ogg",  # 5.3 s: tiled to 29 s
}


def weights_path():
    return fixture_path("weights", "choi_2017_transfer", "weights_tensorflow.hdf5")


def real_params(**extra):
    return {"weights": str(weights_path()), "sha256": DEFAULT_WEIGHTS["sha256"], **extra}


@pytest.fixture(scope="module")
def audio():
    from mirprobe.audio import load_audio

    return {k: load_audio(fixture_path("audio", name), sr=12000) for k, name in CLIPS.items()}


@pytest.fixture(scope="module")
def choi():
    return Choi(params=real_params()).load(device="cpu")


def tf_reference(waves, path, *, backend="theano"):
    """Choi's network in TensorFlow / tf_keras, written from kapre a3bde3e and
    Keras 1.2.2 (not from mirprobe's code): the file read with h5py by its Keras
    layer names, kapre's STFT as a strided 2-d convolution, Keras layers for the
    convnet with BatchNormalization called in training mode (batch statistics).
    In float64: TensorFlow's float32 reductions over a batch's ~400k values are
    off by ~3e-4 (relative) from exact, more than the tolerance."""
    import tensorflow as tf
    import tf_keras

    with h5py.File(path, "r") as f:
        melgram = [f["melgram"][n][()] for n in ("Variable:0", "Variable_1:0", "Variable_2:0")]
        conv = f["ConvBNEluDr"]
        blocks = [
            [
                conv[f"convolution2d_{i}_W:0"][()],
                conv[f"convolution2d_{i}_b:0"][()],
                *(
                    conv[f"batchnormalization_{i}_{p}:0"][()]
                    for p in ("gamma", "beta", "running_mean", "running_std")
                ),
            ]
            for i in range(1, 6)
        ]
    f64 = "float64"
    x = tf.constant(np.stack(waves)[:, :, None, None], f64)  # NHWC (B, L, 1, 1)
    length, frames = x.shape[1], -(-x.shape[1] // 256)
    kernel = tf.constant(np.concatenate(melgram[:2], axis=-1), f64)  # (512, 1, 1, 514)
    if backend == "theano":  # Theano 'half' mode: pad 256, true convolution
        x = tf.pad(x, [[0, 0], [256, 256], [0, 0], [0, 0]])
        kernel = tf.reverse(kernel, axis=[0])
        spec = tf.nn.conv2d(x, kernel, strides=[1, 256, 1, 1], padding="VALID")[:, :frames]
    else:
        spec = tf.nn.conv2d(x, kernel, strides=[1, 256, 1, 1], padding="SAME")
    assert spec.shape[1] == frames == 1360 and length == 348000
    power = spec[:, :, 0, :257] ** 2 + spec[:, :, 0, 257:] ** 2  # (B, T, 257)
    mel = tf.tensordot(power, tf.constant(melgram[2], f64), axes=[[2], [0]])  # (B, T, 96)
    log_spec = 10 * tf.math.log(tf.maximum(mel, 1e-10)) / np.log(10)
    log_spec = tf.maximum(log_spec - tf.reduce_max(log_spec), -80.0)
    h = tf.transpose(log_spec, [0, 2, 1])[..., None]  # (B, 96 mels, T, 1)
    pooled = []
    for (w, b, *bn), pool in zip(blocks, POOLINGS, strict=True):
        layer = tf_keras.layers.Conv2D(32, 3, padding="same", dtype=f64)
        norm = tf_keras.layers.BatchNormalization(axis=-1, epsilon=1e-3, dtype=f64)
        layer.build(h.shape)
        layer.set_weights([w.transpose(2, 3, 1, 0), b])  # (maps, in, r, c) -> HWIO
        y = layer(h)
        norm.build(y.shape)
        norm.set_weights(bn)
        y = tf_keras.layers.ELU(alpha=1.0, dtype=f64)(norm(y, training=True))
        h = tf_keras.layers.MaxPooling2D(pool_size=pool, dtype=f64)(y)
        pooled.append(tf.reduce_mean(h, axis=[1, 2]).numpy())
    return np.concatenate(pooled, axis=1)


def relative_error(a, b):
    """max |a - b| / max |b|, per 32-d block (the blocks' scales differ)."""
    return max(
        float(np.abs(a[:, s : s + 32] - b[:, s : s + 32]).max() / np.abs(b[:, s : s + 32]).max())
        for s in range(0, 160, 32)
    )


def test_real_weights_match_an_independent_tf_keras_forward_pass(audio, choi):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras")
    waves = [choi.window(y) for y in audio.values()]
    reference = tf_reference(waves, weights_path())
    ours = choi.embed(list(audio.values()))["all"]
    assert ours.shape == (3, 160)
    assert relative_error(ours, reference) <= 1e-4
    # the batch matters (batch statistics, batch maximum): a clip alone differs
    alone = choi.embed([audio["jazz"]])["all"]
    assert relative_error(alone, ours[:1]) > 1e-2
    np.testing.assert_allclose(
        alone, tf_reference(waves[:1], weights_path()), rtol=1e-4, atol=1e-4 * np.abs(alone).max()
    )
    # TensorFlow's 'same' padding is the other option, and a different front end
    tf_choi = Choi(params=real_params(kapre_backend="tensorflow")).load()
    tf_ours = tf_choi.embed(list(audio.values()))["all"]
    assert relative_error(tf_ours, tf_reference(waves, weights_path(), backend="tf")) <= 1e-4
    assert relative_error(tf_ours, ours) > 1e-4


def test_chunking_bounds_memory_without_changing_the_batch(audio, choi):
    batch = list(audio.values())
    one_pass = Choi(params=real_params(chunk_clips=3)).load().embed(batch)["all"]
    per_clip = Choi(params=real_params(chunk_clips=1)).load().embed(batch)["all"]
    np.testing.assert_allclose(per_clip, one_pass, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(choi.embed(batch)["all"], one_pass, rtol=1e-5, atol=1e-6)


def test_batch_independent_variant_is_per_clip(audio):
    independent = Choi(params=real_params(batch_statistics=False)).load()
    assert Choi.dataset_batch_size({"batch_statistics": False}) is None
    assert Choi.dataset_batch_size({}) == 256
    together = independent.embed(list(audio.values()))["all"]
    alone = independent.embed([audio["strings"]])["all"]
    # float32 sums over a batch's shapes round differently on some CPUs (1.2e-5 relative
    # on an AMD EPYC); the batch-statistics variant differs by more than 1e-2
    np.testing.assert_allclose(alone[0], together[1], rtol=1e-4, atol=1e-4)


def test_jukemir_batches_are_python2_shuffles():
    # Python 2.7.18: random.seed(0); x = range(20); random.shuffle(x)
    py2 = [0, 15, 17, 13, 1, 12, 11, 2, 19, 9, 18, 5, 3, 10, 6, 8, 4, 7, 14, 16]
    assert jukemir_batches(list(range(20)), batch_size=8) == [py2[:8], py2[8:16], py2[16:]]
    # Python 2.7.18, jukemir's call on 930 sorted names ("%04d.wav" % i): sha256 of the order
    order = [n for b in jukemir_batches([f"{i:04d}.wav" for i in range(930)]) for n in b]
    digest = "7d87a1d40a5d70413c049b8d715895da85ebbc1d6af34416e3e044a50d6cbd4e"
    assert hashlib.sha256("\n".join(order).encode()).hexdigest() == digest
    assert [len(b) for b in jukemir_batches(list(range(930)))] == [256, 256, 256, 162]


def test_dataset_batches_use_jukemir_uids_and_ignore_input_order():
    class Uid:
        @staticmethod
        def jukemir_uid(clip_id):
            return f"u{clip_id}"

    choi = Choi(params={"random_weights": True, "batch_clips": 3})
    ids = [f"c{i}" for i in range(8)]
    batches = choi.dataset_batches(ids, dataset=Uid)
    assert batches == choi.dataset_batches(ids[::-1], dataset=Uid)
    expected = jukemir_batches([f"uc{i}.wav" for i in range(8)], batch_size=3)
    assert batches == [[n[1:-4] for n in b] for b in expected]


def hdf5_copy(tmp_path, edit):
    src = weights_path()
    path = tmp_path / "edited.hdf5"
    path.write_bytes(src.read_bytes())
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda f: f["ConvBNEluDr"].pop("convolution2d_3_b:0"), "missing.*convolution2d_3_b"),
        (lambda f: f["melgram"].create_dataset("extra:0", data=[1.0]), "unexpected.*extra"),
        (
            lambda f: (
                f["ConvBNEluDr"].pop("batchnormalization_2_gamma:0"),
                f["ConvBNEluDr"].create_dataset("batchnormalization_2_gamma:0", data=np.ones(31)),
            ),
            r"shape mismatches.*batchnormalization_2_gamma:0: \(31,\)",
        ),
    ],
)
def test_hdf5_loader_is_strict(tmp_path, edit, message):
    path = hdf5_copy(tmp_path, edit)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ModelError, match=f"edited.hdf5.*{message}"):
        Choi(params={"weights": str(path), "sha256": digest}).load()


def test_default_weights_are_the_pinned_file(choi):
    assert hashlib.sha256(weights_path().read_bytes()).hexdigest() == DEFAULT_WEIGHTS["sha256"]
    assert "/a3e105d0c4c529c512cc197ad8770ff1cc52aa32/compact_cnn/" in DEFAULT_WEIGHTS["weights"]
    with h5py.File(weights_path(), "r") as f:
        kernel = f["ConvBNEluDr"]["convolution2d_2_W:0"][()]
        mel = f["melgram"]["Variable_2:0"][()]
    np.testing.assert_array_equal(choi.model.convs[1].weight.detach().numpy(), kernel)
    np.testing.assert_array_equal(choi.model.freq2mel.numpy(), mel)


def _dataset(tmp_path, n, *, corrupt=None):
    """``n`` short noise clips at 12 kHz with their metadata table."""
    import pandas as pd
    import soundfile as sf

    from mirprobe.datasets.base import write_metadata

    (tmp_path / "audio").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = tmp_path / "audio" / f"c{i}.wav"
        sf.write(path, (0.1 * (1 + i) * rng.standard_normal(12000 * 2)).astype(np.float32), 12000)
        if i == corrupt:
            path.write_bytes(b"garbage" * 100)
        rows.append(
            {
                "clip_id": f"c{i}",
                "audio_path": f"audio/c{i}.wav",
                "offset": 0.0,
                "duration": 2.0,
                "split": "train",
                "label": "x",
                "song_id": f"c{i}",
            }
        )
    write_metadata(pd.DataFrame(rows), tmp_path / "metadata.csv")
    return tmp_path / "metadata.csv"


def _extract_all(metadata, out, *, shard_size, params, n_batches):
    """Resample into shards of ``shard_size``, then run the extract stage per batch."""
    import json

    import pandas as pd

    from mirprobe.audio import shard_slices
    from mirprobe.datasets.base import file_sha256
    from mirprobe.stages import extract, resample

    n_clips = sum(1 for _ in open(metadata)) - 1
    shard_dirs = [
        out / "audio" / f"shard-{k:03d}" for k in range(len(shard_slices(n_clips, shard_size)))
    ]
    # what prepare_dataset records, which resampling checks and the feature shards carry
    files = [f"audio/c{i}.wav" for i in range(n_clips)]
    digests = [file_sha256(metadata.parent / f) for f in files]
    checksums = metadata.with_name("checksums.tsv")
    pd.DataFrame({"audio_path": files, "sha256": digests}).to_csv(checksums, sep="\t", index=False)
    metadata.with_name("prepare.json").write_text(json.dumps({"n_clips": n_clips}))
    for k, shard_dir in enumerate(shard_dirs):
        resample(
            metadata_path=metadata,
            out_dir=shard_dir,
            shard=k,
            shard_size=shard_size,
            sr=12000,
            on_bad_audio="exclude",
            expected_clips=n_clips,
            checksums_path=checksums,
            prepare_record_path=metadata.with_name("prepare.json"),
        )
    features, profiles = {}, []
    for b in range(n_batches):
        path = out / "features" / f"shard-{b:03d}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        profiles.append(
            extract(
                shard_dir=[str(d) for d in shard_dirs],
                out_path=path,
                representation_config={"extractor": "choi", "params": params, "batch_size": 8},
                layers=["all", "layer2"],
                device="cpu",
                shard=b,
            )
        )
        with np.load(path) as shard:
            features.update(zip(shard["clip_ids"].tolist(), shard["layer:all"], strict=True))
    return features, profiles


def test_batches_span_the_dataset_whatever_the_shard_size(tmp_path):
    params = {"random_weights": True, "batch_clips": 3}
    metadata = _dataset(tmp_path, 8, corrupt=5)
    small, profiles = _extract_all(
        metadata, tmp_path / "a", shard_size=2, params=params, n_batches=3
    )
    large, _ = _extract_all(metadata, tmp_path / "b", shard_size=5, params=params, n_batches=3)
    assert sorted(small) == sorted(large) == sorted(f"c{i}" for i in range(8) if i != 5)
    for clip_id in small:
        np.testing.assert_array_equal(small[clip_id], large[clip_id])
    # the profile records the rule and the batch; the excluded clip stays listed there
    choi = Choi(params=params)
    expected = choi.dataset_batches([f"c{i}" for i in range(8)])
    assert [p["batch"]["clip_ids"] for p in profiles] == expected
    assert [p["batch"]["index"] for p in profiles] == [0, 1, 2]
    assert all(p["batch"]["n_batches"] == 3 and p["batch"]["seed"] == 0 for p in profiles)
    assert [c for p in profiles for c in p["batch"]["excluded"]] == ["c5"]
    assert "Python 2" in profiles[0]["batch"]["rule"]
    # each batch is one forward pass of its clips, as embed() computes it
    from mirprobe.audio import load_audio

    first = [c for c in expected[0] if c != "c5"]
    audio = [
        load_audio(tmp_path / "a" / "audio" / _shard_of(tmp_path / "a", c) / f"{c}.wav", sr=12000)
        for c in first
    ]
    direct = choi.load().embed(audio)["all"]
    np.testing.assert_array_equal(np.stack([small[c] for c in first]), direct)
    from mirprobe.errors import DataError

    with pytest.raises(DataError, match="batch 3 asked for.*3 batches"):
        _extract_all(metadata, tmp_path / "c", shard_size=4, params=params, n_batches=4)


def _shard_of(out, clip_id):
    return next(p.parent.name for p in (out / "audio").glob(f"*/{clip_id}.wav"))


def test_the_workflow_plans_one_extract_job_per_batch_reading_every_audio_shard(tmp_path):
    import re

    from conftest import SMALL, snakemake, write_config

    choi = {"extractor": "choi", "params": {"random_weights": True, "batch_clips": 25}}
    write_config(tmp_path, representations={**SMALL["representations"], "choi": choi})
    result = snakemake(
        tmp_path, "-n", "--configfile", str(tmp_path / "config.yaml"), "--cores", "2"
    )
    jobs = re.findall(
        r"rule extract:\s+input: (.*?)\n.*?wildcards: dataset=synth_key, representation=(\S+), "
        r"shard=(\d+)",
        result.stdout + result.stderr,
        flags=re.S,
    )
    planned = {}
    for inputs, representation, shard in jobs:
        planned.setdefault(representation, {})[shard] = sorted(inputs.split(", "))
    # 96 clips: 3 audio shards of 40, 4 batches of 25
    audio = [f"results/audio/synth_key/sr{sr}/shard-{k:03d}" for sr in (12000,) for k in range(3)]
    assert planned["choi"] == {f"{b:03d}": audio for b in range(4)}
    assert sorted(planned["mfcc"]) == ["000", "001", "002"]
    assert all(len(inputs) == 1 for inputs in planned["mfcc"].values())
