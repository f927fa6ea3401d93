"""Test-sized random transformers checkpoints, written with save_pretrained (safetensors)
as a hub checkpoint's folder is laid out (test_transformers_extractor.py,
test_mert_protocol.py)."""

#: the checkpoint kinds :func:`save_tiny` writes
KINDS = ("wav2vec2", "hubert", "ast", "whisper")


def save_tiny(kind, folder):
    """A test-sized random checkpoint of ``kind`` and its feature extractor, in ``folder``."""
    import torch
    from transformers import (
        ASTConfig,
        ASTFeatureExtractor,
        ASTModel,
        HubertConfig,
        HubertModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperModel,
    )

    torch.manual_seed(1234)  # not the extractor's random_weights seed
    conv = dict(
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
    )
    blocks = dict(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32)
    if kind == "wav2vec2":  # the large models' layout: a LayerNorm after the last block
        config = Wav2Vec2Config(
            **blocks, **conv, do_stable_layer_norm=True, feat_extract_norm="layer"
        )
        model, fe = Wav2Vec2Model(config), Wav2Vec2FeatureExtractor(sampling_rate=16000)
    elif kind == "hubert":  # MERT-v1-95M's layout (HuBERT, 24 kHz, no stable LayerNorm)
        model = HubertModel(HubertConfig(**blocks, **conv, do_stable_layer_norm=False))
        fe = Wav2Vec2FeatureExtractor(sampling_rate=24000, do_normalize=True)
    elif kind == "ast":
        config = ASTConfig(
            **blocks,
            num_mel_bins=16,
            max_length=64,
            patch_size=8,
            frequency_stride=8,
            time_stride=8,
        )
        model = ASTModel(config)
        fe = ASTFeatureExtractor(num_mel_bins=16, max_length=64, sampling_rate=16000)
    elif kind == "whisper":
        config = WhisperConfig(
            d_model=16,
            encoder_layers=2,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            num_mel_bins=16,
            max_source_positions=1500,
            vocab_size=64,
            max_target_positions=16,
            pad_token_id=1,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
        )
        model, fe = (
            WhisperModel(config),
            WhisperFeatureExtractor(feature_size=16, sampling_rate=16000),
        )
    model.save_pretrained(folder, safe_serialization=True)
    fe.save_pretrained(folder)
    return folder
