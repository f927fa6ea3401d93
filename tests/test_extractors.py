import numpy as np
import pytest

from conftest import fixture_path
from mirprobe.audio import load_audio
from mirprobe.errors import ConfigError
from mirprobe.extractors import EXTRACTOR_CLASSES, build_extractor, get_extractor_class
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
        assert isinstance(cls.sample_rate, int)
        assert cls.default_layers


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
