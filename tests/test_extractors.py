import numpy as np
import pytest

from conftest import fixture_path
from mirprobe.audio import load_audio
from mirprobe.errors import ConfigError
from mirprobe.extractors import EXTRACTOR_CLASSES, build_extractor, get_extractor_class
from mirprobe.extractors.base import Extractor
from mirprobe.extractors.handcrafted import moment_statistics


def test_moment_statistics_follow_jukemir():
    features = np.array([[0.0, 1.0, 3.0, 6.0], [1.0, 1.0, 1.0, 1.0]], dtype=np.float32)
    stats = moment_statistics(features)
    d1 = np.diff(features, axis=1)
    d2 = np.diff(features, n=2, axis=1)
    expected = np.concatenate(
        [features.mean(1), features.std(1), d1.mean(1), d1.std(1), d2.mean(1), d2.std(1)]
    )
    np.testing.assert_allclose(stats, expected)


@pytest.mark.parametrize("name,dim", [("chroma", 72), ("mfcc", 120)])
def test_handcrafted_dims_and_determinism(name, dim):
    rng = np.random.default_rng(0)
    batch = [rng.standard_normal(22050).astype(np.float32) * 0.1 for _ in range(3)]
    extractor = build_extractor({"extractor": name, "params": {}}).load(device="cpu")
    first = extractor.embed(batch, layers=["stats"])["stats"]
    second = extractor.embed(batch, layers=["stats"])["stats"]
    assert first.shape == (3, dim) and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)


def test_chroma_finds_the_pitch_class_of_a_tone():
    sr = 22050
    t = np.arange(2 * sr) / sr
    a440 = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    stats = build_extractor({"extractor": "chroma"}).embed([a440], layers=["stats"])["stats"][0]
    assert int(np.argmax(stats[:12])) == 9  # chroma bin 9 = A


def test_real_audio_fixture_embeds():
    path = sorted(fixture_path("audio").glob("*.ogg"))[0]
    y = load_audio(path, sr=22050, duration=3.0)
    out = build_extractor({"extractor": "mfcc"}).embed([y], layers=["stats"])["stats"]
    assert out.shape == (1, 120) and np.isfinite(out).all()


def test_unknown_layer_and_extractor_are_named():
    with pytest.raises(ConfigError, match="nope"):
        build_extractor({"extractor": "chroma"}).embed([np.zeros(100, np.float32)], layers=["nope"])
    with pytest.raises(ConfigError, match="jukebox9"):
        get_extractor_class("jukebox9")


def test_registry_classes_declare_the_interface():
    for name in EXTRACTOR_CLASSES:
        cls = get_extractor_class(name)
        assert cls.name == name
        # None: the rate depends on the params (sample_rate_for), e.g. a checkpoint's
        assert cls.sample_rate is None or isinstance(cls.sample_rate, int)
        assert cls.sample_rate is not None or cls.sample_rate_for is not Extractor.sample_rate_for
        assert cls.default_layers or cls.default_layers_for is not Extractor.default_layers_for


def test_extractors_reject_audio_that_is_not_one_mono_channel():
    from mirprobe.errors import DataError
    from mirprobe.extractors.base import mono_float32

    assert mono_float32([0.0, 1.0]).dtype == np.float32
    assert mono_float32([], allow_empty=True).shape == (0,)
    with pytest.raises(DataError, match=r"non-empty mono audio \(1-d array\), got shape \(0,\)"):
        mono_float32([])
    with pytest.raises(DataError, match=r"got shape \(2, 5\)"):
        mono_float32(np.zeros((2, 5)), allow_empty=True)
    # through an extractor's embed: a stereo clip names its shape
    pytest.importorskip("torch")
    clmr = build_extractor({"extractor": "clmr", "params": {"random_weights": True}})
    with pytest.raises(DataError, match=r"got shape \(2, 22050\)"):
        clmr.embed([np.zeros((2, 22050), dtype=np.float32)], layers=["encoder"])


def test_cuda_without_a_gpu_is_a_config_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here (tests/test_gpu.py covers cuda)")
    from mirprobe.features import resolve_device

    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")


# -- clips an extractor cannot embed: too short, or non-finite features ---------
def _shard(folder, clips, *, sr):
    """A resampled shard as the resample stage writes it: WAVs and a manifest."""
    import pandas as pd
    import soundfile as sf

    folder.mkdir(parents=True)
    rows = []
    for clip_id, y in clips.items():
        sf.write(folder / f"{clip_id}.wav", y, sr, subtype="PCM_16")
        rows.append(
            {
                "clip_id": clip_id,
                "source": f"audio/{clip_id}.wav",
                "status": "ok",
                "reason": "",
                "n_samples": len(y),
                "peak": float(np.abs(y).max()),
            }
        )
    pd.DataFrame(rows).to_csv(folder / "manifest.tsv", sep="\t", index=False)
    return folder


def _noise(n, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_each_audio_extractor_declares_its_shortest_input_and_chromas_is_exact():
    for name in EXTRACTOR_CLASSES:
        cls = get_extractor_class(name)
        if cls.reads_audio:
            assert isinstance(cls.min_input_samples, int) and cls.min_input_samples >= 1, name
    for name in ("chroma", "mfcc"):
        extractor = build_extractor({"extractor": name})
        n = extractor.min_input_samples
        assert n == 1024  # two hops of 512: three frames, the second difference defined
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
            short = extractor.embed([_noise(n - 1)], layers=["stats"])["stats"]
        assert not np.isfinite(short).all()  # what an unchecked 0.05 s clip gives
        assert np.isfinite(extractor.embed([_noise(n)], layers=["stats"])["stats"]).all()


def test_a_clip_too_short_for_the_extractor_stops_extraction_naming_it(tmp_path):
    from mirprobe.errors import DataError
    from mirprobe.features import extract_shard

    clips = {"ok0": _noise(22050), "tiny1": _noise(220, 1), "ok2": _noise(22050, 2)}
    clips["tiny3"] = _noise(1000, 3)
    shard = _shard(tmp_path / "shard-000", clips, sr=22050)
    with pytest.raises(DataError) as error:
        extract_shard(
            shard,
            tmp_path / "f.npz",
            extractor=build_extractor({"extractor": "chroma"}),
            layers=["stats"],
        )
    message = str(error.value)
    assert "2 bad clip(s)" in message
    assert (
        "tiny1 (audio/tiny1.wav): too short for chroma: 220 samples (0.010 s) at 22050 Hz, "
        "it accepts at least 1024 (0.046 s)" in message
    )
    assert "tiny3 (audio/tiny3.wav): too short for chroma: 1000 samples" in message
    assert "ok0" not in message and not (tmp_path / "f.npz").exists()


def test_under_exclude_a_too_short_clip_is_left_out_with_its_reason(tmp_path):
    from mirprobe.features import extract_shard, feature_shard_exclusions, load_feature_shards

    clips = {"ok0": _noise(22050), "tiny1": _noise(220, 1), "ok2": _noise(22050, 2)}
    shard = _shard(tmp_path / "shard-000", clips, sr=22050)
    out = tmp_path / "f.npz"
    profile = extract_shard(
        shard,
        out,
        extractor=build_extractor({"extractor": "mfcc"}),
        layers=["stats"],
        batch_size=2,
        on_bad_audio="exclude",
    )
    clip_ids, X, _ = load_feature_shards([out], layer="stats")
    assert clip_ids == ["ok0", "ok2"] and X.shape == (2, 120) and np.isfinite(X).all()
    alone = build_extractor({"extractor": "mfcc"}).embed([load_audio(shard / "ok2.wav", sr=22050)])
    np.testing.assert_array_equal(X[1], alone["stats"][0])
    [excluded] = feature_shard_exclusions([out])
    assert excluded["clip_id"] == "tiny1" and excluded["source"] == "audio/tiny1.wav"
    assert excluded["reason"].startswith("too short for mfcc: 220 samples (0.010 s)")
    assert profile["n_clips"] == 2 and profile["n_excluded_at_extraction"] == 1


def test_non_finite_features_are_named_or_excluded(tmp_path):
    """MusiCNN in the package's float16 log compression gives inf on loud audio."""
    import os

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    pytest.importorskip("tensorflow")
    pytest.importorskip("musicnn")
    from mirprobe.errors import DataError
    from mirprobe.features import extract_shard, feature_shard_exclusions, load_feature_shards

    loud = load_audio(sorted(fixture_path("audio").glob("*.ogg"))[0], sr=16000, duration=6.0)
    clips = {"loud": loud, "quiet": 0.02 * loud}
    shard = _shard(tmp_path / "shard-000", clips, sr=16000)
    config = {"extractor": "musicnn", "params": {"log_compression": "package"}}
    with pytest.raises(DataError, match=r"1 bad clip\(s\).*\n  loud \(audio/loud\.wav\): non-fin"):
        extract_shard(
            shard, tmp_path / "f.npz", extractor=build_extractor(config), layers=["mean_max"]
        )
    out = tmp_path / "g.npz"
    extract_shard(
        shard, out, extractor=build_extractor(config), layers=["mean_max"], on_bad_audio="exclude"
    )
    clip_ids, X, _ = load_feature_shards([out], layer="mean_max")
    assert clip_ids == ["quiet"] and np.isfinite(X).all()
    [excluded] = feature_shard_exclusions([out])
    assert excluded["clip_id"] == "loud"
    assert excluded["reason"].startswith("non-finite features (NaN or inf; layer mean_max: ")
