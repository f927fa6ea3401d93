"""Jukebox extractor: a tiny configuration of jukebox-infer's real classes on the CPU."""

import hashlib
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("jukebox_infer")

from mirprobe.errors import DataError, ModelError  # noqa: E402
from mirprobe.extractors import get_extractor_class  # noqa: E402
from mirprobe.extractors.jukebox import Jukebox, label_conditioning  # noqa: E402

SR = 44100
TINY = {"architecture": "tiny", "random_weights": True, "seed": 0}
N_CTX, HOP = 64, 128  # the tiny model: 64 tokens of 128 samples


def clip(seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (np.sin(2 * np.pi * 220 * t) + 0.3 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny():
    return Jukebox(params=TINY).load(device="cpu", layers=["4"])


class NotAllowed:
    """A pickled object that torch's weights_only loader refuses."""


def test_registered_without_heavy_imports():
    cls = get_extractor_class("jukebox")
    assert cls is Jukebox and cls.wants_gpu and cls.sample_rate == SR
    assert cls.available_layers({}) == tuple(str(i) for i in range(1, 73))
    assert cls.default_layers_for({}) == ("36",)
    assert cls.available_layers({"architecture": "tiny"}) == ("1", "2", "3", "4")


def test_embed_layers_dims_pooling_determinism(tiny):
    batch = [clip(1.0), clip(0.3, seed=1)]
    out = tiny.embed(batch, layers=["1", "4"])
    assert set(out) == {"1", "4"}
    for layer in out:
        assert out[layer].shape == (2, 32) and out[layer].dtype == np.float32
        assert np.isfinite(out[layer]).all()
    assert not np.allclose(out["1"], out["4"])
    assert not np.allclose(out["4"][0], out["4"][1])
    # mean over the tokens of the block output
    with torch.inference_mode():
        z = tiny.tokens(batch[0])
        acts = tiny.activations(z, layers=["4"])["4"]
    assert z.shape == (1, N_CTX) and acts.shape == (1, N_CTX, 32)
    np.testing.assert_allclose(out["4"][0], acts[0].mean(0).numpy(), rtol=1e-5, atol=1e-7)
    # deterministic, also from a fresh model with the same seed, and batch-independent
    again = Jukebox(params=TINY).embed([batch[1], batch[0]], layers=["1", "4"])
    np.testing.assert_allclose(again["4"][::-1], out["4"], rtol=1e-5, atol=1e-7)
    # peak normalisation: the gain does not matter
    np.testing.assert_allclose(
        tiny.embed([3.0 * batch[0]], layers=["4"])["4"][0], out["4"][0], rtol=1e-5, atol=1e-7
    )


def test_random_codebook_gives_varied_codes(tiny):
    with torch.inference_mode():
        z = tiny.tokens(clip(1.0))
    assert len(torch.unique(z)) > 3


def test_only_blocks_up_to_the_deepest_layer_are_built_and_run():
    model = Jukebox(params=TINY)
    model.embed([clip(0.5)], layers=["2"])
    blocks = model.prior.prior.transformer._attn_mods
    assert len(blocks) == 2 and model.depth == 2
    calls = []
    for block in blocks:
        block.register_forward_hook(lambda *args: calls.append(1))
    model.embed([clip(0.5)], layers=["1"])
    assert len(calls) == 1  # block 2 exists but does not run for layer 1
    model.embed([clip(0.5)], layers=["3"])  # deeper: rebuilt with 3 blocks
    assert len(model.prior.prior.transformer._attn_mods) == 3


def _as_cuda_long(module, monkeypatch):
    """Let jukebox-infer's CUDA-only type assertions accept CPU long tensors."""
    fake = types.SimpleNamespace(
        **{k: getattr(torch, k) for k in dir(torch) if not k.startswith("__")}
    )
    fake.cuda = types.SimpleNamespace(LongTensor=torch.Tensor)
    monkeypatch.setattr(module, "t", fake)


def test_matches_the_library_conditioning_and_forward(tiny, monkeypatch):
    import jukebox_infer.prior.autoregressive as autoregressive
    import jukebox_infer.prior.conditioners as conditioners

    _as_cuda_long(conditioners, monkeypatch)
    _as_cuda_long(autoregressive, monkeypatch)
    prior = tiny.prior
    raw = int(prior.raw_to_tokens)
    meta = dict(
        artist="unknown",
        genre="unknown",
        total_length=(62 * SR // raw) * raw,
        offset=0,
        lyrics="lyrics go here!!!",
    )
    y = prior.get_y(prior.labeller.get_batch_labels([meta], "cpu"), 0)
    x_cond, y_cond, _ = prior.get_cond(None, y)  # jukemir's get_cond
    ours_y, ours_x = label_conditioning(prior)
    torch.testing.assert_close(ours_y, y_cond)
    torch.testing.assert_close(ours_x, x_cond)
    # jukemir: prior.forward on the full context (only_encode) = our block-4 output
    with torch.inference_mode():
        z = tiny.tokens(clip(1.0))
        prior.prior.only_encode = True
        try:
            reference = prior.prior.forward(z, x_cond=x_cond, y_cond=y_cond, encoder_kv=None)
        finally:
            prior.prior.only_encode = False
        ours = tiny.activations(z, layers=["4"])["4"]
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6)


def _save_openai_format(model, path, *, extra=None):
    """torch.save as Jukebox did (torch 1.4 legacy format, hps a jukebox Hyperparams)."""
    jukebox = types.ModuleType("jukebox")
    hparams = types.ModuleType("jukebox.hparams")

    class Hyperparams(dict):
        pass

    Hyperparams.__module__ = "jukebox.hparams"
    Hyperparams.__qualname__ = "Hyperparams"
    hparams.Hyperparams = Hyperparams
    jukebox.hparams = hparams
    saved = {k: sys.modules.get(k) for k in ("jukebox", "jukebox.hparams")}
    sys.modules.update({"jukebox": jukebox, "jukebox.hparams": hparams})
    try:
        checkpoint = {
            "hps": Hyperparams(levels=3, name="5b", downs_t=(3, 2, 2)),
            "model": {f"module.{k}": v for k, v in model.state_dict().items()},
            "step": 123,
            **(extra or {}),
        }
        torch.save(checkpoint, path, _use_new_zipfile_serialization=False)
    finally:
        for key, module in saved.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def checkpoints(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("jukebox")
    return root, {
        "vqvae_sha256": _save_openai_format(tiny.vqvae, root / "vqvae.pth.tar"),
        "prior_sha256": _save_openai_format(tiny.prior, root / "prior_level_2.pth.tar"),
    }


def test_checkpoints_load_with_verification_and_give_identical_outputs(tiny, checkpoints):
    root, sums = checkpoints
    params = {"architecture": "tiny", "weights_dir": str(root), "vqvae_urls": [], "prior_urls": []}
    loaded = Jukebox(params=params | sums)
    batch = [clip(1.0), clip(0.4, seed=2)]
    np.testing.assert_array_equal(
        loaded.embed(batch, layers=["2", "4"])["4"], tiny.embed(batch, layers=["4"])["4"]
    )
    # a shallower build skips the deeper blocks' weights and still matches
    shallow = Jukebox(params=params | sums).load(device="cpu", layers=["2"])
    assert len(shallow.prior.prior.transformer._attn_mods) == 2
    np.testing.assert_array_equal(
        shallow.embed(batch, layers=["2"])["2"], tiny.embed(batch, layers=["2"])["2"]
    )


def test_wrong_checksum_missing_file_and_missing_checksum_are_named(checkpoints, tmp_path):
    root, sums = checkpoints
    base = {"architecture": "tiny", "weights_dir": str(root), "vqvae_urls": [], "prior_urls": []}
    with pytest.raises(ModelError, match=r"prior_level_2\.pth\.tar: checksum mismatch"):
        Jukebox(params=base | sums | {"prior_sha256": "0" * 64}).load(layers=["1"])
    with pytest.raises(ModelError, match=r"(?s)vqvae\.pth\.tar.*no URL known") as error:
        Jukebox(params=base | sums | {"weights_dir": str(tmp_path)}).load(layers=["1"])
    assert "prior_level_2.pth.tar" in str(error.value)
    with pytest.raises(ModelError, match=f"exists with sha256 {sums['vqvae_sha256']}"):
        Jukebox(params=base | sums | {"vqvae_sha256": None}).load(layers=["1"])
    url = "http://127.0.0.1:9/vqvae.pth.tar"
    with pytest.raises(ModelError, match=url):
        Jukebox(params=base | sums | {"weights_dir": str(tmp_path), "vqvae_urls": [url]}).load(
            layers=["1"]
        )


def test_pickled_objects_need_the_explicit_opt_in(tiny, tmp_path):
    root = tmp_path
    sums = {
        "vqvae_sha256": _save_openai_format(
            tiny.vqvae, root / "vqvae.pth.tar", extra={"opt": NotAllowed()}
        ),
        "prior_sha256": _save_openai_format(tiny.prior, root / "prior_level_2.pth.tar"),
    }
    params = {"architecture": "tiny", "weights_dir": str(root), "vqvae_urls": [], "prior_urls": []}
    with pytest.raises(ModelError, match=r"(?s)vqvae\.pth\.tar: cannot be read .*allow_pickle"):
        Jukebox(params=params | sums).load(layers=["1"])
    Jukebox(params=params | sums | {"allow_pickle": True}).load(layers=["1"])


@pytest.mark.parametrize("mode", ["shorter", "pad", "error"])
def test_short_clips(mode):
    model = Jukebox(params=TINY | {"short_clips": mode}).load(layers=["2"])
    short = clip(0.1)  # 4410 samples = 34 tokens < 64
    if mode == "error":
        with pytest.raises(DataError, match="4410 samples"):
            model.embed([short], layers=["2"])
        return
    with torch.inference_mode():
        z = model.tokens(short)
    assert z.shape == (1, 4410 // HOP if mode == "shorter" else N_CTX)
    out = model.embed([short, clip(1.0)], layers=["2"])["2"]
    assert out.shape == (2, 32) and np.isfinite(out).all()
    if mode == "shorter":
        with pytest.raises(DataError, match="shorter than one token"):
            model.embed([short[:100]], layers=["2"])


def test_unknown_layer_is_a_config_error(tiny):
    from mirprobe.errors import ConfigError

    with pytest.raises(ConfigError, match="no layers"):
        tiny.embed([clip(0.2)], layers=["5"])


def test_defaults_are_the_published_digests_and_urls():
    from mirprobe.extractors.jukebox import PRIOR_SHA256, VQVAE_SHA256

    params = Jukebox().params
    # the digests Sheet Sage publishes (sheetsage/assets/jukebox.json)
    assert (
        params["vqvae_sha256"]
        == VQVAE_SHA256
        == ("69745413a48e887f8a3fe91b972a6f7f434021a1ce911a99187b331eb48c059a")
    )
    assert (
        params["prior_sha256"]
        == PRIOR_SHA256
        == ("89a1dd14f5b2f9b16b3e73b53fa2138cc89fd96bb13249b4267fea471de92672")
    )
    hosts = [
        "https://openaipublic.blob.core.windows.net/jukebox/models/5b/",
        "https://storage.googleapis.com/jukebox-weights/",
        "https://openaipublic.azureedge.net/jukebox/models/5b/",
    ]
    assert params["vqvae_urls"] == [host + "vqvae.pth.tar" for host in hosts]
    assert params["prior_urls"] == [host + "prior_level_2.pth.tar" for host in hosts]


def test_a_prior_of_the_wrong_size_fails_before_hashing(tmp_path, monkeypatch):
    import mirprobe.download

    def no_hashing(*args, **kwargs):
        raise AssertionError("a file of the wrong size was hashed")

    monkeypatch.setattr(mirprobe.download, "file_checksum", no_hashing)
    (tmp_path / "prior_level_2.pth.tar").write_bytes(b"\0" * 1000)
    params = {
        "weights_dir": str(tmp_path),
        "vqvae_urls": [],
        "prior_urls": [],
        "vqvae_sha256": None,
    }
    with pytest.raises(
        ModelError,
        match=r"has 1,000 bytes, but the published file has "
        r"10,288,727,721",
    ) as error:
        Jukebox(params=params).load(layers=["1"])
    assert str(tmp_path / "prior_level_2.pth.tar") in str(error.value)


def test_sheet_sage_reference_pair():
    """CALM's recipe against Sheet Sage's reference (float32), where the 5B checkpoints are.

    Enable with MIRPROBE_JUKEBOX_WEIGHTS=<folder holding vqvae.pth.tar and
    prior_level_2.pth.tar> (and MIRPROBE_JUKEBOX_DEVICE=cuda on a GPU machine).
    """
    import os
    from pathlib import Path

    from conftest import fixture_path
    from mirprobe.extractors.jukebox import REFERENCE_TOLERANCE, reference_error

    weights = Path(os.environ.get("MIRPROBE_JUKEBOX_WEIGHTS", "~/.cache/mirprobe/jukebox"))
    weights = weights.expanduser()
    if not all((weights / name).is_file() for name in ("vqvae.pth.tar", "prior_level_2.pth.tar")):
        pytest.skip(
            f"no Jukebox-5B checkpoints in {weights}: set MIRPROBE_JUKEBOX_WEIGHTS to a folder "
            "holding vqvae.pth.tar and prior_level_2.pth.tar to run the reference check"
        )
    pair = fixture_path("weights", "jukebox_reference")
    error, resampler = reference_error(
        pair / "legacy.wav",
        pair / "legacy_ref.npy",
        weights_dir=weights,
        device=os.environ.get("MIRPROBE_JUKEBOX_DEVICE", "cpu"),
        dtype="float32",
    )
    assert error < REFERENCE_TOLERANCE, f"summed absolute error {error} (resampler {resampler})"
