"""MusicGen decoder states under no conditioning, a text prompt and audio (chroma)
conditioning, on tiny random MusicGen and MusicGen-Melody architectures of the real
transformers classes, offline on the CPU; and configs/conditioning.yaml's plan."""

import re

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from conftest import REPO, snakemake  # noqa: E402
from mirprobe.config import load_config  # noqa: E402
from mirprobe.errors import ConfigError  # noqa: E402
from mirprobe.extractors.musicgen import MusicGen, melody_chroma  # noqa: E402

SR = 32000
TINY = {"architecture": "tiny", "random_weights": True}
MELODY = {"architecture": "tiny_melody", "random_weights": True}
LAYERS = ["0", "1", "2"]


def tone(freq, seconds=2.0):
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def clips():
    return [tone(220.0), tone(330.0)]  # pitch classes A and E


def save_with_tokenizer(model, folder):
    """``model`` saved with a small T5-like word-level tokenizer (no hub)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "jazz": 3, "piano": 4}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder), tokenizer


@pytest.fixture(scope="module")
def melody_none():
    return MusicGen(params=MELODY | {"conditioning": "none"}).load(device="cpu")


@pytest.fixture(scope="module")
def melody_audio():
    return MusicGen(params=MELODY | {"conditioning": "audio"}).load(device="cpu")


def reference_states(extractor, batch, **inputs):
    """transformers' own full forward pass: decoder_hidden_states of the code steps, pooled."""
    # in the decoder's precision (float64 on the CPU), which transformers' forward gives the
    # states it makes itself only through the default dtype
    dtype = extractor.decoder.layer_norm.weight.dtype
    inputs = {
        key: value.to(dtype) if value.is_floating_point() else value
        for key, value in inputs.items()
    }
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.inference_mode():
            codes = extractor.delay_pattern(extractor.codes(torch.from_numpy(np.stack(batch))))
            bsz, k, steps = codes.shape
            out = extractor.model(
                decoder_input_ids=codes.reshape(bsz * k, steps), output_hidden_states=True, **inputs
            )
    finally:
        torch.set_default_dtype(default_dtype)
    return [h[:, -steps:].mean(dim=1).numpy() for h in out.hidden_states]


def test_none_is_the_unconditional_path_exactly():
    batch = clips()
    default = MusicGen(params=TINY).load(device="cpu").embed(batch, layers=LAYERS)
    none = (
        MusicGen(params=TINY | {"conditioning": "none"})
        .load(device="cpu")
        .embed(batch, layers=LAYERS)
    )
    for layer in LAYERS:
        np.testing.assert_array_equal(none[layer], default[layer])


def test_melody_none_is_transformers_forward_without_conditioning(melody_none):
    batch = clips()
    out = melody_none.embed(batch, layers=LAYERS)
    reference = reference_states(melody_none, batch)
    for i, layer in enumerate(LAYERS):
        np.testing.assert_allclose(out[layer], reference[i], rtol=1e-5, atol=1e-6)


def test_melody_audio_is_transformers_forward_with_the_clips_chroma(melody_audio, melody_none):
    batch = clips()
    out = melody_audio.embed(batch, layers=LAYERS)
    chroma = melody_chroma(torch.from_numpy(np.stack(batch)))
    reference = reference_states(melody_audio, batch, input_features=chroma)
    for i, layer in enumerate(LAYERS):
        np.testing.assert_allclose(out[layer], reference[i], rtol=1e-5, atol=1e-6)
    # the same weights (same seed) unconditioned give other states at every layer
    none = melody_none.embed(batch, layers=LAYERS)
    for layer in LAYERS:
        assert not np.allclose(out[layer], none[layer], atol=1e-4)


def test_audio_conditioning_on_another_clips_chroma_differs(melody_audio):
    batch = clips()
    audio = torch.from_numpy(np.stack(batch))
    with torch.inference_mode():
        own, _ = melody_audio._embed_windows(audio, layers=["2"])
        same, _ = melody_audio._embed_windows(audio, layers=["2"], condition_audio=audio)
        swapped, _ = melody_audio._embed_windows(audio, layers=["2"], condition_audio=audio.flip(0))
    np.testing.assert_array_equal(own["2"], same["2"])
    for row in range(2):
        assert not np.allclose(swapped["2"][row], own["2"][row], atol=1e-4)


def test_chroma_is_one_hot_at_the_tones_pitch_class():
    chroma = melody_chroma(torch.from_numpy(np.stack([tone(440.0), tone(329.63)])))
    # the 2 s tones themselves (not padded to 30 s) at hop 4096, centred: 1 + 64000 // 4096
    # frames of 12 bins; the model repeats them to its 235 chroma steps
    assert chroma.shape == (2, 16, 12)
    np.testing.assert_array_equal(chroma.sum(-1).numpy(), np.ones((2, 16)))
    inside = slice(2, 14)  # frames whose window lies within the 2 s tone
    assert (chroma[0, inside].argmax(-1) == 9).all()  # A (librosa's order, C = 0)
    assert (chroma[1, inside].argmax(-1) == 4).all()  # E


def test_text_conditioning_of_both_classes(tmp_path, melody_none):
    batch = clips()
    # MusicGen: text through cross-attention (layer 0 is below it)
    plain = MusicGen(params=TINY).load(device="cpu")
    folder, _ = save_with_tokenizer(plain.model, tmp_path / "mg")
    text = MusicGen(params={"weights": folder, "conditioning": "text", "text": "jazz piano"})
    text_out = text.load(device="cpu").embed(batch, layers=LAYERS)
    none_out = plain.embed(batch, layers=LAYERS)
    np.testing.assert_array_equal(text_out["0"], none_out["0"])
    assert not np.allclose(text_out["2"], none_out["2"], atol=1e-4)
    assert text.source_record()["conditioning"] == "text"
    assert text.source_record()["text"] == "jazz piano"
    # MusicGen-Melody: text states prepended after transformers' default chroma
    folder, tokenizer = save_with_tokenizer(melody_none.model, tmp_path / "melody")
    melody = MusicGen(params={"weights": folder, "conditioning": "text", "text": "jazz piano"})
    melody_out = melody.load(device="cpu").embed(batch, layers=LAYERS)
    tokens = tokenizer(["jazz piano"], return_tensors="pt")
    reference = reference_states(
        melody,
        batch,
        input_ids=tokens["input_ids"].expand(2, -1),
        attention_mask=tokens["attention_mask"].expand(2, -1),
    )
    none = melody_none.embed(batch, layers=LAYERS)
    for i, layer in enumerate(LAYERS):
        np.testing.assert_allclose(melody_out[layer], reference[i], rtol=1e-5, atol=1e-6)
        assert not np.allclose(melody_out[layer], none[layer], atol=1e-4)
    assert melody.source_record()["melody"] is True


def test_conditioning_params_are_checked_and_recorded():
    with pytest.raises(ConfigError, match="conditioning 'audio' needs MusicGen-Melody"):
        MusicGen(params=TINY | {"conditioning": "audio"})
    with pytest.raises(ConfigError, match="needs a non-empty params.text"):
        MusicGen(params=MELODY | {"conditioning": "text"})
    with pytest.raises(ConfigError, match="given with conditioning 'none'"):
        MusicGen(params=TINY | {"conditioning": "none", "text": "jazz"})
    # the unconditional default records what it did before; explicit conditioning is recorded
    assert MusicGen(params=TINY).source_record() is None
    record = MusicGen(params=MELODY | {"conditioning": "audio"}).source_record()
    assert record["conditioning"] == "audio" and record["melody"] is True
    assert record["chroma"]["n_fft"] == 16384 and record["chroma"]["hop_length"] == 4096
    hub = MusicGen(params={"weights": "facebook/musicgen-melody", "conditioning": "audio"})
    assert hub.source_record()["weights"] == "facebook/musicgen-melody"
    assert MusicGen.default_layers_for(hub.params) == tuple(str(i) for i in range(49))
    assert MusicGen.sample_rate_for(hub.params) == SR


def test_conditioning_config_plans_three_conditions_at_every_layer(tmp_path):
    path = REPO / "configs" / "conditioning.yaml"
    config = load_config(path)
    result = snakemake(tmp_path, "-n", "--configfile", str(path), "--cores", "8")
    planned = set(
        re.findall(
            r"rule train_probe:.*?wildcards: dataset=(\S+), representation=(\S+), layer=(\d+)",
            result.stdout + result.stderr,
            flags=re.S,
        )
    )
    representations = config["representations"]
    conditions = {}
    for name, entry in representations.items():
        params = entry["params"]
        key = (params["weights"], bool(params.get("random_weights")))
        conditions.setdefault(key, set()).add(params["conditioning"])
        n_layers = 48 if params["weights"] == "facebook/musicgen-melody" else 24
        for dataset in config["datasets"]:
            layers = {int(layer) for d, r, layer in planned if (d, r) == (dataset, name)}
            assert layers == set(range(n_layers + 1)), (dataset, name)
    melody = "facebook/musicgen-melody"
    assert conditions[(melody, False)] == conditions[(melody, True)] == {"none", "text", "audio"}
    assert len(planned) == 2 * (6 * 49 + 2 * 25)
