"""MusiCNN with the package's real trained weights, against the package's own extractor."""

import os

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("tensorflow")
pytest.importorskip("musicnn")

from conftest import fixture_path  # noqa: E402
from mirprobe.errors import ConfigError  # noqa: E402
from mirprobe.extractors import build_extractor  # noqa: E402
from mirprobe.extractors.musicnn import MusiCNN  # noqa: E402

CLIPS = [
    "Kevin_MacLeod_-_Vibe_Ace.ogg",  # 60 s: 20 patches
    "sorohanro_-_solo-trumpet-06.ogg",  # one patch
]


def package_features(path, model="MSD_musicnn"):
    from musicnn.extractor import extractor

    _, _, features = extractor(str(path), model=model, input_length=3, extract_features=True)
    return features


def load_16k(path):
    import librosa

    return librosa.load(str(path), sr=16000)[0]  # as musicnn.extractor.batch_data does


@pytest.fixture(scope="module")
def musicnn_package_mode():
    return MusiCNN(params={"log_compression": "package"}).load()


@pytest.mark.parametrize("name", CLIPS)
def test_equals_time_mean_of_the_package_extractor(name, musicnn_package_mode):
    path = fixture_path("audio", name)
    expected = package_features(path)
    out = musicnn_package_mode.embed(
        [load_16k(path)], layers=["mean_max", "mean_pool", "max_pool", "penultimate"]
    )
    for layer in ("mean_pool", "max_pool", "penultimate"):
        reference = np.asarray(expected[layer]).reshape(-1, out[layer].shape[1]).mean(axis=0)
        np.testing.assert_allclose(out[layer][0], reference, rtol=1e-4, atol=1e-4)
    assert out["mean_max"].shape == (1, 2 * 753)
    np.testing.assert_array_equal(
        out["mean_max"], np.concatenate([out["mean_pool"], out["max_pool"]], axis=1)
    )


def test_default_mode_is_finite_and_equals_the_package_where_it_does_not_overflow(tmp_path):
    import soundfile as sf

    path = fixture_path("audio", CLIPS[0])
    y = load_16k(path)
    extractor = build_extractor({"extractor": "musicnn"})
    loud = extractor.embed([y], layers=["mean_max"])["mean_max"]
    assert np.isfinite(loud).all()  # where the package gives inf
    # quieter audio does not overflow float16: then both modes equal the package
    quiet = 0.02 * y
    sf.write(tmp_path / "quiet.wav", quiet, 16000, subtype="FLOAT")
    expected = package_features(tmp_path / "quiet.wav")
    assert np.isfinite(expected["mean_pool"]).all()
    reference = np.concatenate([expected["mean_pool"].mean(0), expected["max_pool"].mean(0)])
    out = extractor.embed([quiet, y[: 16000 * 7]], layers=["mean_max"])["mean_max"]
    np.testing.assert_allclose(out[0], reference, rtol=1e-4, atol=1e-4)
    # a clip's embedding does not depend on its batch
    alone = extractor.embed([y[: 16000 * 7]], layers=["mean_max"])["mean_max"]
    np.testing.assert_allclose(out[1], alone[0], rtol=1e-5, atol=1e-5)


def test_short_clips_are_repeat_padded_and_layers_checked():
    extractor = MusiCNN().load()
    rng = np.random.default_rng(0)
    out = extractor.embed([0.1 * rng.standard_normal(8000).astype(np.float32)], layers=["max_pool"])
    assert out["max_pool"].shape == (1, 753) and np.isfinite(out["max_pool"]).all()
    with pytest.raises(ConfigError, match="no layers"):
        extractor.embed([np.zeros(16000, np.float32)], layers=["timbral"])
    assert MusiCNN.sample_rate == 16000 and not MusiCNN.wants_gpu
