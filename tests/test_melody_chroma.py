"""MusicGen-Melody's chroma conditioning (``melody_chroma``) against transformers' own
``MusicgenMelodyFeatureExtractor``, on a real music fixture clip (librosa's Vibe Ace,
resampled to 32 kHz) cut into windows of the lengths the workflow feeds."""

import numpy as np
import pytest

from conftest import fixture_path

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mirprobe.audio import load_audio  # noqa: E402
from mirprobe.extractors.musicgen import CHROMA, SAMPLE_RATE, melody_chroma  # noqa: E402

#: window lengths (s): longer than the extractor's 30 s chunk, exactly it, shorter ones
#: (a short clip or a window's tail), and one shorter than the 16384-sample FFT
SECONDS = (31.0, 30.0, 10.0, 2.0, 0.3)


@pytest.fixture(scope="module")
def clip():
    path = fixture_path("audio", "Kevin_MacLeod_-_Vibe_Ace.ogg")
    return load_audio(path, sr=SAMPLE_RATE, duration=31.0)


def transformers_extractor():
    """transformers' feature extractor, or skip where torchaudio (which it needs) is absent."""
    try:
        import torchaudio  # noqa: F401
    except (ImportError, OSError) as error:  # OSError: a build for another torch
        pytest.skip(f"torchaudio does not import beside this torch ({error})")
    from transformers import MusicgenMelodyFeatureExtractor

    return MusicgenMelodyFeatureExtractor(
        n_fft=CHROMA["n_fft"],
        hop_length=CHROMA["hop_length"],
        chunk_length=CHROMA["chunk_length"],
        num_chroma=CHROMA["num_chroma"],
        sampling_rate=SAMPLE_RATE,
    )


@pytest.mark.parametrize("seconds", SECONDS)
def test_chroma_equals_transformers_feature_extractor(clip, seconds):
    extractor = transformers_extractor()
    n = int(seconds * SAMPLE_RATE)
    # a batch of two equal-length windows, as the workflow batches them
    windows = np.stack([clip[:n], clip[len(clip) - n :]])
    reference = extractor(list(windows), sampling_rate=SAMPLE_RATE, return_tensors="pt")
    ours = melody_chroma(torch.from_numpy(windows))
    assert ours.shape == reference["input_features"].shape
    assert torch.equal(ours, reference["input_features"])


@pytest.mark.parametrize("seconds", SECONDS)
def test_chroma_frames_cover_the_window_unpadded(clip, seconds):
    """A window shorter than the 30 s chunk is not zero-padded to it (transformers pads
    only to the longest clip of a batch): centred frames of the window itself, at least
    one FFT long; longer windows are cut to the chunk."""
    n = int(seconds * SAMPLE_RATE)
    chroma = melody_chroma(torch.from_numpy(clip[None, :n]))
    covered = min(max(n, CHROMA["n_fft"]), CHROMA["chunk_length"] * SAMPLE_RATE)
    assert chroma.shape == (1, 1 + covered // CHROMA["hop_length"], CHROMA["num_chroma"])
    np.testing.assert_array_equal(chroma.sum(-1).numpy(), 1.0)  # one-hot
    # music has more than one loudest pitch class over ten seconds
    if seconds >= 10.0:
        assert len(set(chroma[0].argmax(-1).tolist())) > 1


def test_audio_conditioned_states_equal_transformers_processor_path(clip):
    """The workflow's audio conditioning on a 2 s window (shorter than the chunk) equals
    transformers' forward fed its own feature extractor's chroma."""
    extractor = transformers_extractor()
    from mirprobe.extractors.musicgen import MusicGen

    melody = MusicGen(
        params={"architecture": "tiny_melody", "random_weights": True, "conditioning": "audio"}
    ).load(device="cpu")
    windows = np.stack([clip[: 2 * SAMPLE_RATE], clip[-2 * SAMPLE_RATE :]])
    layers = ["0", "1", "2"]
    out = melody.embed(list(windows), layers=layers)
    features = extractor(list(windows), sampling_rate=SAMPLE_RATE, return_tensors="pt")
    with torch.inference_mode():
        codes = melody.delay_pattern(melody.codes(torch.from_numpy(windows)))
        bsz, k, steps = codes.shape
        reference = melody.model(
            decoder_input_ids=codes.reshape(bsz * k, steps),
            input_features=features["input_features"],
            output_hidden_states=True,
        ).hidden_states
    for i, layer in enumerate(layers):
        pooled = reference[i][:, -steps:].mean(dim=1).numpy()
        np.testing.assert_allclose(out[layer], pooled, rtol=1e-5, atol=1e-6)
