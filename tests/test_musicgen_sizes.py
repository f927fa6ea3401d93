"""Real-size random-weights MusicGen (``architecture: small | medium | large``), built from
the hub checkpoints' published sizes without the hub."""

import pytest

from mirprobe.errors import ConfigError
from mirprobe.extractors.musicgen import (
    EncodecLatents,
    MusicGen,
    real_size_musicgen_config,
)

torch = pytest.importorskip("torch")

#: fixtures' weights/SOURCES.md: hidden / layers / heads / ffn; melody: the decoder
#: config.json (musicgen_melody_decoder) of ylacombe/musicgen-melody-bella-ciao, a
#: fine-tune of facebook/musicgen-melody by transformers' porter of the class
PUBLISHED = {
    "small": (1024, 24, 16, 4096),
    "medium": (1536, 48, 24, 6144),
    "large": (2048, 48, 32, 8192),
    "melody": (1536, 48, 24, 6144),
}


@pytest.mark.parametrize("size", sorted(PUBLISHED))
def test_real_size_architecture_has_the_published_sizes(size):
    hidden, blocks, heads, ffn = PUBLISHED[size]
    config = real_size_musicgen_config(size)
    decoder = config.decoder
    assert (decoder.hidden_size, decoder.num_hidden_layers) == (hidden, blocks)
    assert (decoder.num_attention_heads, decoder.ffn_dim) == (heads, ffn)
    assert (decoder.num_codebooks, decoder.vocab_size) == (4, 2048)
    encodec = config.audio_encoder
    assert encodec.upsampling_ratios == [8, 5, 4, 4] and encodec.num_filters == 64
    assert encodec.codebook_size == 2048 and encodec.use_conv_shortcut is False
    params = {"architecture": size, "random_weights": True}
    assert MusicGen.available_layers(params) == tuple(str(i) for i in range(blocks + 1))
    assert MusicGen(params=params).source_record() is None  # nothing read from the hub


def test_real_size_architectures_are_random_weights_only():
    for cls in (MusicGen, EncodecLatents):
        with pytest.raises(ConfigError, match="architecture 'medium' has no trained weights"):
            cls(params={"architecture": "medium"})


def test_real_size_melody_is_the_melody_class_with_its_chroma_conditioner():
    config = real_size_musicgen_config("melody")
    assert config.model_type == "musicgen_melody"
    # facebook/musicgen-melody's preprocessor: 12 chroma bins, 30 s at hop 4096 = 235 frames
    assert (config.num_chroma, config.chroma_length) == (12, 235)
    assert real_size_musicgen_config("medium").model_type == "musicgen"
    params = {"architecture": "melody", "random_weights": True, "conditioning": "audio"}
    assert MusicGen.is_melody(params)
    assert MusicGen(params=params).conditioning == "audio"
    with pytest.raises(ConfigError, match="conditioning 'audio' needs MusicGen-Melody"):
        MusicGen(params=params | {"architecture": "medium"})
