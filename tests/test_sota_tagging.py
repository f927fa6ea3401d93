"""Won et al. 2020's FCN, CRNN and MusiCNN taggers: the published state dicts load
strictly, the front end is the one they were trained with, and each model's own tag
head tags real clips plausibly (and stops doing so with a wrong front end)."""

import hashlib
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import fixture_path, fixture_weights_dir  # noqa: E402
from mirprobe.errors import ConfigError, ModelError  # noqa: E402
from mirprobe.extractors import build_extractor  # noqa: E402
from mirprobe.extractors.sota_tagging import PRETRAINED, TAGS, SotaTagger  # noqa: E402
from mirprobe.extractors.sota_tagging_nets import (  # noqa: E402
    MelSpectrogram,
    build_network,
    htk_mel_filterbank,
)
from mirprobe.extractors.torch_weights import load_into  # noqa: E402

#: where each published checkpoint lies in the shared fixtures (SOURCES.md)
FIXTURE_FOLDER = {"ffcd1f90": "upstream_ffcd1f90", "e8f5b2e6": "fork_e8f5b2e6"}
CLIPS = {
    "jazz": "Kevin_MacLeod_-_Vibe_Ace.ogg",  # FMA, Kevin MacLeod's "Jazz Sampler"
    "orchestra": "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg",
    "trumpet": "sorohanro_-_solo-trumpet-06.ogg",  # a jazz trumpet loop (blues/dorian)
}


def fixture_checkpoint(dataset, model):
    url = PRETRAINED[(dataset, model)][0]
    commit = re.search(r"/([0-9a-f]{40})/", url).group(1)
    return fixture_path(
        "weights", "sota_music_tagging", FIXTURE_FOLDER[commit[:8]], dataset, model,
        "best_model.pth",
    )  # fmt: skip


def published(dataset, model, tmp_path, **params):
    return SotaTagger(
        params={"dataset": dataset, "model": model, "cache_dir": str(tmp_path), **params}
    ).load()


@pytest.fixture(scope="module")
def clips():
    from mirprobe.audio import load_audio

    def load(sr):
        # the first 30 s, as an MSD / Jamendo preview; resampled as the repo's librosa.load
        return {
            name: load_audio(fixture_path("audio", file), sr=sr)[: 30 * sr]
            for name, file in CLIPS.items()
        }

    return load


def test_default_urls_and_digests_are_the_fixture_files():
    assert len(PRETRAINED) == 7
    for (dataset, model), (url, sha256, size) in PRETRAINED.items():
        assert re.fullmatch(
            r"https://raw\.githubusercontent\.com/(minzwon/sota-music-tagging-models|"
            r"philtgun/music-tagging-benchmark)/[0-9a-f]{40}/models/"
            rf"{dataset}/{model}/best_model\.pth",
            url,
        )
        path = fixture_checkpoint(dataset, model)
        assert path.stat().st_size == size
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    assert all(len(tags) == len(set(tags)) == 50 for tags in TAGS.values())
    assert TAGS["jamendo"][0] == "genre---alternative"  # LabelBinarizer's sorted order


@pytest.mark.parametrize("dataset, model", sorted(PRETRAINED))
def test_state_dicts_load_strictly_with_the_stored_front_end(dataset, model):
    state = torch.load(fixture_checkpoint(dataset, model), map_location="cpu", weights_only=True)
    net = build_network(model, dataset)
    load_into(net, state, name="sota", path="best_model.pth")  # raises on any key or shape
    # the stored buffers are the front end re-implemented here: periodic Hann, HTK mel
    # bands without normalisation (float32 rounding apart), not librosa's Slaney default
    import librosa

    fb = state["spec.mel_scale.fb"]
    torch.testing.assert_close(state["spec.spectrogram.window"], torch.hann_window(512))
    torch.testing.assert_close(fb, htk_mel_filterbank(), atol=2e-5, rtol=0)
    slaney = librosa.filters.mel(sr=16000, n_fft=512, n_mels=96, fmax=8000.0).T
    assert np.abs(slaney - fb.numpy()).max() > 0.5
    bad = {**state, "dense_extra.weight": torch.zeros(1)}
    with pytest.raises(ModelError, match="unexpected.*dense_extra.weight"):
        load_into(build_network(model, dataset), bad, name="sota", path="best_model.pth")


def failed_expectations(dataset, model, tags, scores):
    """What a plausible tagger gets right on the fixture clips, as (clip, why) failures."""
    ranked = {clip: [tags[i] for i in np.argsort(-row)] for clip, row in scores.items()}
    expected = {
        # MSD's 50 tags have no classical; its jazz tag should fire on jazz
        ("msd", "fcn"): [("trumpet", "jazz", 1)],
        ("msd", "crnn"): [("trumpet", "jazz", 1), ("jazz", "jazz", 1)],
        ("jamendo", "fcn"): [("orchestra", "genre---classical", 1), ("trumpet", "genre---jazz", 1)],
        ("jamendo", "crnn"): [("orchestra", "genre---classical", 1)],
        ("jamendo", "musicnn"): [("orchestra", "genre---classical", 1)],
        ("mtat", "fcn"): [("orchestra", "classical", 1), ("orchestra", "strings", 3),
                          ("orchestra", "violin", 3)],
        ("mtat", "musicnn"): [("orchestra", "classical", 1), ("orchestra", "strings", 3),
                              ("orchestra", "violin", 3)],
    }[(dataset, model)]  # fmt: skip
    return [
        (clip, f"{tag} not in top {k}: {ranked[clip][:3]}")
        for clip, tag, k in expected
        if tag not in ranked[clip][:k]
    ]


def tag_scores(tagger, clips):
    out = tagger.embed(list(clips.values()), layers=["tags"])["tags"]
    return dict(zip(clips, out, strict=True))


@pytest.mark.parametrize("dataset, model", sorted(PRETRAINED))
def test_the_tag_head_tags_real_clips_plausibly(monkeypatch, tmp_path, clips, dataset, model):
    fixture_weights_dir(monkeypatch)  # the published URL resolves offline, by digest
    tagger = published(dataset, model, tmp_path)
    assert not failed_expectations(dataset, model, tagger.tags, tag_scores(tagger, clips(16000)))


class MagnitudeDecibels(torch.nn.Module):
    """A wrong front end: dB of the magnitude (half the power's dB)."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec

    def forward(self, audio):
        return self.spec(audio) / 2


@pytest.mark.parametrize("wrong", ["22050 Hz audio", "Slaney mel bands", "magnitude dB"])
def test_a_wrong_front_end_makes_the_tags_implausible(monkeypatch, tmp_path, clips, wrong):
    fixture_weights_dir(monkeypatch)
    tagger = published("jamendo", "fcn", tmp_path)
    audio = clips(22050 if wrong == "22050 Hz audio" else 16000)
    if wrong == "Slaney mel bands":
        import librosa

        slaney = librosa.filters.mel(sr=16000, n_fft=512, n_mels=96, fmax=8000.0).T
        tagger.model.spec.mel_scale.fb.copy_(torch.from_numpy(slaney))
    elif wrong == "magnitude dB":
        tagger.model.spec = MagnitudeDecibels(tagger.model.spec)
    assert failed_expectations("jamendo", "fcn", tagger.tags, tag_scores(tagger, audio))


RANDOM = {"random_weights": True}
DIMS = {
    "fcn": {"layer1": 128, "layer2": 256, "layer3": 256, "layer4": 256, "layer5": 64, "tags": 50},
    "crnn": {"layer1": 128, "layer2": 256, "layer3": 256, "layer4": 256, "gru": 32, "tags": 50},
    "musicnn": {"frontend": 1122, "layer1": 128, "layer2": 128, "layer3": 128, "pooled": 1506,
                "dense1": 200, "tags": 50},
}  # fmt: skip


def noise(seconds, n=2, seed=0):
    rng = np.random.default_rng(seed)
    return [0.1 * rng.standard_normal(int(seconds * 16000)).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("model", ["fcn", "crnn", "musicnn"])
def test_layers_are_pooled_block_outputs_averaged_over_windows(model):
    tagger = SotaTagger(params={"model": model, "dataset": "mtat", "chunks": 2, **RANDOM}).load()
    assert tagger.available_layers({"model": model}) == tuple(DIMS[model])
    seconds = {"musicnn": 3, "fcn": 29, "crnn": 29}[model]
    batch = noise(1.25 * seconds)  # two windows per clip, at 0 and (L - w) // 2
    out = tagger.embed(batch, layers=list(DIMS[model]))
    assert {k: v.shape[1] for k, v in out.items()} == DIMS[model]
    assert all(v.shape[0] == 2 and v.dtype == np.float32 for v in out.values())
    w, y = seconds * 16000, batch[0]
    hop = (y.size - w) // 2
    windows = tagger.embed([y[:w], y[hop : hop + w]], layers=list(DIMS[model]))
    for layer in DIMS[model]:
        np.testing.assert_allclose(out[layer][0], windows[layer].mean(0), rtol=1e-4, atol=1e-5)
    # [mean, max] over the map's positions, read off the network itself
    with torch.inference_mode():
        maps = tagger.model(torch.from_numpy(y[:w])[None])
    first = maps["layer1"].flatten(2)[0]
    np.testing.assert_allclose(
        windows["layer1"][0],
        torch.cat([first.mean(1), first.amax(1)]).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    assert not np.allclose(out[tagger.default_layers_for({"model": model})[0]][0],
                           out[tagger.default_layers_for({"model": model})[0]][1])  # fmt: skip


def test_short_clips_are_tiled_or_padded_and_chunks_follow_eval_py():
    tagger = SotaTagger(params={"model": "musicnn", "dataset": "mtat", **RANDOM}).load()
    short = noise(1.0, n=1)[0]
    np.testing.assert_array_equal(tagger.windows(short)[0], np.tile(short, 3)[:48000])
    padded = SotaTagger(params={"model": "musicnn", **RANDOM, "short_clips": "zero_pad"})
    np.testing.assert_array_equal(padded.windows(short)[0], np.pad(short, (0, 32000)))
    y = noise(10.0, n=1)[0]
    assert tagger.windows(y).shape == (3, 48000)
    sixteen = SotaTagger(params={"model": "musicnn", **RANDOM, "chunks": 16}).windows(y)
    hop = (y.size - 48000) // 16  # eval.py's placement
    np.testing.assert_array_equal(sixteen[5], y[5 * hop : 5 * hop + 48000])


def test_config_errors_and_the_msd_musicnn_architecture():
    with pytest.raises(ConfigError, match=r"no published musicnn checkpoint trained on msd"):
        SotaTagger(params={"model": "musicnn", "dataset": "msd"})
    wide = build_extractor(
        {"extractor": "sota_tagger", "params": {"model": "musicnn", "dataset": "msd", **RANDOM}}
    ).load()
    assert wide.embed(noise(3.0, n=1), layers=["pooled"])["pooled"].shape == (1, 4194)
    assert SotaTagger.default_layers_for({"model": "crnn"}) == ("gru",)
    with pytest.raises(ConfigError, match="has no layers"):
        wide.embed(noise(3.0, n=1), layers=["layer5"])


def test_front_end_is_power_decibels_of_the_htk_mel_spectrogram():
    spec = MelSpectrogram()
    t = np.arange(16000) / 16000
    tone = torch.from_numpy((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))[None]
    db = spec(tone)
    assert db.shape == (1, 96, 63)  # centred frames: 1 + 16000 // 256
    stft = torch.stft(tone, 512, 256, window=torch.hann_window(512), return_complex=True)
    expected = 10 * torch.log10(
        torch.clamp((stft.abs() ** 2).transpose(1, 2) @ htk_mel_filterbank(), min=1e-10)
    ).transpose(1, 2)
    torch.testing.assert_close(db, expected)
    assert float(spec(torch.zeros(1, 16000)).max()) == -100.0  # the 1e-10 floor, no top_db
