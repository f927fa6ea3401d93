"""Neural extractors (MusicGen, EnCodec) on tiny random-weight models of the real
transformers classes, offline on the CPU."""

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from mirprobe.audio import write_wav  # noqa: E402
from mirprobe.config import validate_config  # noqa: E402
from mirprobe.errors import ConfigError, ModelError  # noqa: E402
from mirprobe.extractors import build_extractor  # noqa: E402
from mirprobe.extractors.musicgen import EncodecLatents, MusicGen  # noqa: E402
from mirprobe.extractors.windows import window_spans  # noqa: E402
from mirprobe.features import extract_shard  # noqa: E402

SR = 32000
TINY = {"architecture": "tiny", "random_weights": True}


def clips(n=3, seconds=2.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return [
        (0.3 * np.sin(2 * np.pi * (220 + 110 * k) * t) + 0.05 * rng.standard_normal(t.size)).astype(
            np.float32
        )
        for k in range(n)
    ]


@pytest.fixture(scope="module")
def tiny_musicgen():
    return MusicGen(params=TINY).load(device="cpu")


def test_musicgen_layers_dims_pooling_and_determinism(tiny_musicgen):
    batch = clips()
    out = tiny_musicgen.embed(batch, layers=["0", "1", "2"])
    assert set(out) == {"0", "1", "2"}
    for layer in out.values():
        assert layer.shape == (3, 32) and layer.dtype == np.float32 and np.isfinite(layer).all()
    # the same model built again from the same seed gives identical features
    again = MusicGen(params=TINY).load(device="cpu").embed(batch, layers=["0", "1", "2"])
    for layer in out:
        np.testing.assert_array_equal(out[layer], again[layer])
    # a clip's embedding does not depend on the rest of its batch
    alone = tiny_musicgen.embed(batch[1:2], layers=["2"])["2"]
    np.testing.assert_allclose(alone[0], out["2"][1], rtol=1e-5, atol=1e-6)
    # different clips, different features; random codebooks are not all zero
    assert not np.allclose(out["2"][0], out["2"][1])
    with torch.inference_mode():
        codes = tiny_musicgen.codes(torch.from_numpy(np.stack(batch)))
    assert codes.shape == (3, 4, 100) and codes.unique().numel() > 10


def test_musicgen_layers_are_transformers_hidden_states_mean_pooled(tiny_musicgen):
    """Layer i = decoder_hidden_states[i] of the full forward pass, averaged over steps."""
    batch = clips(2)
    out = tiny_musicgen.embed(batch, layers=["0", "1", "2"])
    with torch.inference_mode():
        codes = tiny_musicgen.delay_pattern(tiny_musicgen.codes(torch.from_numpy(np.stack(batch))))
        assert codes.shape == (2, 4, 104)
        reference = tiny_musicgen.decoder(
            input_ids=codes.reshape(8, 104),
            encoder_hidden_states=torch.zeros(
                2, 1, 32, dtype=tiny_musicgen.decoder.layer_norm.weight.dtype
            ),
            output_hidden_states=True,
            use_cache=False,
        ).hidden_states
    assert len(reference) == 3
    for i, hidden in enumerate(reference):
        np.testing.assert_allclose(out[str(i)], hidden.mean(dim=1).numpy(), rtol=1e-6, atol=1e-6)


def test_delay_pattern_layout(tiny_musicgen):
    codes = torch.arange(12).reshape(1, 4, 3)
    laid = tiny_musicgen.delay_pattern(codes)[0]
    P = 2048
    assert laid.tolist() == [
        [P, 0, 1, 2, P, P, P],
        [P, P, 3, 4, 5, P, P],
        [P, P, P, 6, 7, 8, P],
        [P, P, P, P, 9, 10, 11],
    ]


@pytest.mark.parametrize("layers,ran", [(["1"], [True, False]), (["0"], [False, False])])
def test_layers_beyond_the_deepest_requested_are_not_computed(tiny_musicgen, layers, ran):
    calls = [0, 0]
    blocks = list(tiny_musicgen.decoder.layers)
    norm_calls = []

    def counter(index):
        def hook(module, args, output):
            calls[index] += 1

        return hook

    handles = [block.register_forward_hook(counter(i)) for i, block in enumerate(blocks)]
    handles.append(
        tiny_musicgen.decoder.layer_norm.register_forward_hook(lambda *a: norm_calls.append(1))
    )
    try:
        out = tiny_musicgen.embed(clips(2), layers=layers)
    finally:
        for handle in handles:
            handle.remove()
    assert [c > 0 for c in calls] == ran
    assert not norm_calls
    assert list(out) == layers
    # the full layer list is restored afterwards
    assert list(tiny_musicgen.decoder.layers) == blocks
    full = tiny_musicgen.embed(clips(2), layers=["0", "1", "2"])
    np.testing.assert_array_equal(out[layers[0]], full[layers[0]])


def test_long_clips_are_windowed_and_mean_pooled(tiny_musicgen):
    assert window_spans(100, window=40, min_tail=10) == [(0, 40), (40, 80), (80, 100)]
    assert window_spans(85, window=40, min_tail=10) == [(0, 40), (40, 80)]
    assert window_spans(5, window=40, min_tail=10) == [(0, 5)]
    windowed = MusicGen(params={**TINY, "window_seconds": 1.0}).load(device="cpu")
    y = clips(1, seconds=2.0)[0]
    whole = windowed.embed([y], layers=["2"])["2"][0]
    halves = windowed.embed([y[:SR], y[SR:]], layers=["2"])["2"]
    np.testing.assert_allclose(whole, halves.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_saved_weights_load_through_the_real_loader(tmp_path, tiny_musicgen):
    tiny_musicgen.model.save_pretrained(tmp_path / "mg", safe_serialization=True)
    assert (tmp_path / "mg" / "model.safetensors").is_file()
    params = {"weights": str(tmp_path / "mg")}
    assert MusicGen.available_layers(params) == ("0", "1", "2")
    loaded = MusicGen(params=params).load(device="cpu")
    batch = clips(2)
    expected = tiny_musicgen.embed(batch, layers=["0", "2"])
    got = loaded.embed(batch, layers=["0", "2"])
    for layer in expected:
        np.testing.assert_array_equal(got[layer], expected[layer])


def test_missing_weights_dir_is_a_model_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelError, match="no-such-model"):
        MusicGen(params={"weights": str(missing)}).load(device="cpu")
    with pytest.raises(ModelError, match="no-such-model"):
        EncodecLatents(params={"weights": str(missing)}).load(device="cpu")
    with pytest.raises(ConfigError, match="random_weights"):
        MusicGen(params={"architecture": "tiny"})


def test_text_condition_changes_decoder_layers_only(tmp_path, tiny_musicgen):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "jazz": 3, "piano": 4}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )  # T5 appends </s>
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    tiny_musicgen.model.save_pretrained(tmp_path / "mg")
    tokenizer.save_pretrained(tmp_path / "mg")
    conditioned = MusicGen(params={"weights": str(tmp_path / "mg"), "text": "jazz piano"})
    conditioned.load(device="cpu")
    batch = clips(2)
    null = tiny_musicgen.embed(batch, layers=["0", "2"])
    text = conditioned.embed(batch, layers=["0", "2"])
    np.testing.assert_array_equal(text["0"], null["0"])
    assert not np.allclose(text["2"], null["2"])
    # the tokenised empty string (</s> through T5) is another condition than the null one
    tokenized = MusicGen(params={"weights": str(tmp_path / "mg"), "empty_text": "tokenized"})
    empty = tokenized.load(device="cpu").embed(batch, layers=["2"])["2"]
    assert not np.allclose(empty, null["2"]) and not np.allclose(empty, text["2"])


def test_encodec_latents():
    extractor = EncodecLatents(params=TINY).load(device="cpu")
    batch = clips()
    out = extractor.embed(batch, layers=["encoder", "quantized"])
    assert out["encoder"].shape == (3, 32) and out["quantized"].shape == (3, 32)
    again = EncodecLatents(params=TINY).load(device="cpu").embed(batch, layers=["encoder"])
    np.testing.assert_array_equal(out["encoder"], again["encoder"])
    with torch.inference_mode():
        audio = torch.from_numpy(np.stack(batch))[:, None].to(extractor.model.dtype)
        latents = extractor.model.encoder(audio)
    np.testing.assert_allclose(out["encoder"], latents.mean(-1).numpy(), rtol=1e-6, atol=1e-7)
    # the quantised latents approximate the continuous ones
    assert np.abs(out["quantized"] - out["encoder"]).mean() < np.abs(out["encoder"]).mean()


def test_encodec_weights_round_trip(tmp_path):
    extractor = EncodecLatents(params=TINY).load(device="cpu")
    extractor.model.save_pretrained(tmp_path / "enc")
    loaded = EncodecLatents(params={"weights": str(tmp_path / "enc")}).load(device="cpu")
    batch = clips(2)
    for layer in ("encoder", "quantized"):
        np.testing.assert_array_equal(
            loaded.embed(batch, layers=[layer])[layer],
            extractor.embed(batch, layers=[layer])[layer],
        )


def test_config_validation_knows_the_layers(tmp_path):
    config = {
        "datasets": {"d": {"kind": "synthetic_key"}},
        "representations": {
            "mg": {"extractor": "musicgen", "params": dict(TINY), "layers": [0, 2]},
            "small": {"extractor": "musicgen", "layers": [24]},
            "enc": {"extractor": "encodec", "params": dict(TINY)},
        },
    }
    validate_config(config)
    assert MusicGen.default_layers_for({}) == tuple(str(i) for i in range(25))
    assert MusicGen.available_layers({"weights": "facebook/musicgen-large"})[-1] == "48"
    bad = json.loads(json.dumps(config))
    bad["representations"]["mg"]["layers"] = [3]
    with pytest.raises(ConfigError, match="unknown layers"):
        validate_config(bad)


def test_extract_shard_with_musicgen(tmp_path):
    shard = tmp_path / "shard-000"
    shard.mkdir()
    rows = []
    for k, y in enumerate(clips(3, seconds=1.5)):
        write_wav(shard / f"c{k}.wav", y, sr=SR)
        rows.append({"clip_id": f"c{k}", "source": f"c{k}.wav", "status": "ok", "reason": ""})
        rows[-1]["n_samples"] = y.size
    rows.append({"clip_id": "bad", "source": "bad.wav", "status": "excluded", "reason": "empty"})
    rows[-1]["n_samples"] = 0
    pd.DataFrame(rows).to_csv(shard / "manifest.tsv", sep="\t", index=False)
    extractor = build_extractor({"extractor": "musicgen", "params": TINY})
    out = tmp_path / "features.npz"
    profile = extract_shard(shard, out, extractor=extractor, layers=["0", "2"], batch_size=2)
    with np.load(out) as features:
        assert features["clip_ids"].tolist() == ["c0", "c1", "c2"]
        assert features["layer:2"].shape == (3, 32)
    assert profile["n_clips"] == 3 and profile["n_excluded"] == 1
    assert profile["clips_per_s"] > 0


def test_cpu_runs_in_float64_by_default(tiny_musicgen):
    """``dtype: auto`` on the CPU: decoder and EnCodec in float64, whose last bits (unlike
    float32's) do not reach the stored float32 features (tests/test_cpu_independence.py)."""
    assert tiny_musicgen.decoder.layer_norm.weight.dtype == torch.float64
    assert next(tiny_musicgen.model.audio_encoder.parameters()).dtype == torch.float64
    assert tiny_musicgen.embed(clips(1), layers=["2"])["2"].dtype == np.float32


def test_reduced_precision_decoder_keeps_encodec_in_float64_on_the_cpu(tiny_musicgen):
    """dtype runs the decoder in reduced precision (float16 on CUDA by default); EnCodec's
    codes must not change with it."""
    half = MusicGen(params={**TINY, "dtype": "bfloat16"}).load(device="cpu")
    assert half.decoder.layer_norm.weight.dtype == torch.bfloat16
    assert next(half.model.audio_encoder.parameters()).dtype == torch.float64
    batch = clips(2)
    low = half.embed(batch, layers=["2"])["2"]
    full = tiny_musicgen.embed(batch, layers=["2"])["2"]
    assert low.dtype == np.float32
    np.testing.assert_allclose(low, full, atol=0.1)
