"""The paper config's MERT rows extract as MARBLE (the MERT authors' benchmark code) does:
a tiny random checkpoint in MERT-v1-95M's layout, run with the paper config's own MERT
params, against MARBLE's ``HuBERTFeature`` recipe written out (a Wav2Vec2FeatureExtractor
with ``do_normalize = processor_normalize`` on the whole clip, one forward pass, every
hidden state mean-pooled over time)."""

import numpy as np
import pytest
import yaml
from tiny_checkpoints import save_tiny

from conftest import REPO
from mirprobe.errors import ConfigError
from mirprobe.extractors.hf_transformers import TransformersEncoder

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

SR = 24000
#: MARBLE's benchmark/models/musichubert_hf/MERT-v1-*.yaml: processor_normalize
MARBLE_NORMALIZE = {"m-a-p/MERT-v1-95M": True, "m-a-p/MERT-v1-330M": False}
#: params that name the hub checkpoint (replaced here by the tiny local one)
HUB_ONLY = ("model", "weights_sha256", "num_layers", "sample_rate")


@pytest.fixture(scope="module")
def tiny_mert(tmp_path_factory):
    """HuBERT in MERT-v1-95M's layout at 24 kHz; its preprocessor says do_normalize false,
    as the one copy of 95M's preprocessor_config.json found in public material does."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    folder = tmp_path_factory.mktemp("mert")
    torch.manual_seed(7)
    config = HubertConfig(
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=32,
        # MERT's own front end: 7 convolutions, 320 samples a frame (75 Hz at 24 kHz)
        conv_dim=(16,) * 7,
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        do_stable_layer_norm=False,
    )
    HubertModel(config).save_pretrained(folder, safe_serialization=True)
    Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=False).save_pretrained(folder)
    return str(folder)


def paper_mert_rows():
    with open(REPO / "configs" / "paper.yaml") as handle:
        config = yaml.safe_load(handle)
    return {
        name: entry
        for name, entry in config["representations"].items()
        if entry.get("params", {}).get("model", "").startswith("m-a-p/MERT")
    }


def marble_features(model, y, *, normalize):
    """MARBLE's extraction of one clip (no sliding window): all hidden states, mean-pooled."""
    from transformers import Wav2Vec2FeatureExtractor

    processor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SR,
        padding_value=0.0,
        return_attention_mask=True,
        do_normalize=normalize,
    )
    wav = processor(y, return_tensors="pt", sampling_rate=SR, padding=True).input_values
    with torch.no_grad():
        states = model(wav, output_hidden_states=True).hidden_states
    return [s[0].mean(0).numpy() for s in states]


def test_paper_mert_rows_are_the_mert_checkpoints_at_24khz():
    rows = paper_mert_rows()
    assert {r["params"]["model"] for r in rows.values()} == set(MARBLE_NORMALIZE)
    for entry in rows.values():
        params = entry["params"]
        assert params["model_class"] == "HubertModel" and params["sample_rate"] == SR


@pytest.mark.parametrize("name", sorted(paper_mert_rows()))
def test_paper_mert_row_extracts_whole_clips_as_marble(tiny_mert, name):
    entry = paper_mert_rows()[name]
    params = {k: v for k, v in entry["params"].items() if k not in HUB_ONLY}
    extractor = TransformersEncoder(params=params | {"model": tiny_mert})
    extractor.load()
    if params.get("random_weights"):
        model = extractor.model  # its seeded random initialisation (tested elsewhere)
    else:
        from transformers import HubertModel

        model = HubertModel.from_pretrained(tiny_mert).eval()
    rng = np.random.default_rng(0)
    # the paper's clip lengths: MTT 29.1 s, GTZAN / GiantSteps 30 s, Emomusic 45 s
    layers = list(extractor.available_layers(extractor.params))
    for seconds in (29.1, 30.0, 45.0):
        y = (0.05 * rng.standard_normal(int(seconds * SR)) + 0.02).astype(np.float32)
        out = extractor.embed([y], layers=layers)
        normalize = MARBLE_NORMALIZE[entry["params"]["model"]]
        reference = marble_features(model, y, normalize=normalize)
        for i, layer in enumerate(layers):
            np.testing.assert_allclose(out[layer][0], reference[i], rtol=1e-4, atol=1e-5)
    assert extractor.source_record()["do_normalize"] is normalize


def test_do_normalize_overrides_the_checkpoint_and_is_recorded(tiny_mert):
    y = [(0.05 * np.random.default_rng(1).standard_normal(SR) + 0.02).astype(np.float32)]
    own = TransformersEncoder(params={"model": tiny_mert})
    on = TransformersEncoder(params={"model": tiny_mert, "do_normalize": True})
    off = TransformersEncoder(params={"model": tiny_mert, "do_normalize": False})
    out = {e: e.embed(y, layers=["3"])["3"] for e in (own, on, off)}
    np.testing.assert_array_equal(out[own], out[off])  # the checkpoint's own: off
    assert not np.allclose(out[on], out[off], atol=1e-4)
    assert own.source_record()["do_normalize"] is False
    assert on.source_record()["do_normalize"] is True


def test_do_normalize_on_an_extractor_without_it_is_a_config_error(tmp_path):
    # Whisper's feature extractor has no do_normalize
    save_tiny("whisper", tmp_path)
    params = {"model": str(tmp_path), "do_normalize": True}
    with pytest.raises(ConfigError, match="params.do_normalize given, but its Whisper"):
        TransformersEncoder(params=params).load()
