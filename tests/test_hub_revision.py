"""MusicGen / EnCodec hub weights are read at one resolved commit, recorded in the
feature profile's source; offline, from a Hugging Face cache laid out as the hub
writes it (``models--<org>--<name>/snapshots/<commit>/``, ``refs/<branch>``),
holding tiny random models of the real transformers classes."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

from mirprobe.audio import write_wav  # noqa: E402
from mirprobe.errors import ConfigError, ModelError  # noqa: E402
from mirprobe.extractors import musicgen  # noqa: E402
from mirprobe.extractors.musicgen import EncodecLatents, MusicGen  # noqa: E402
from mirprobe.features import extract_shard  # noqa: E402

SR = 32000
TINY = {"architecture": "tiny", "random_weights": True}
OLD, NEW = "1" * 40, "2" * 40  # two commits of one repository


def clips(n=2, seconds=1.0):
    t = np.arange(int(seconds * SR)) / SR
    return [(0.3 * np.sin(2 * np.pi * (220 + 110 * k) * t)).astype(np.float32) for k in range(n)]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline Hugging Face cache in ``tmp_path`` (what HF_HUB_CACHE and
    HF_HUB_OFFLINE=1 set when huggingface_hub is imported)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    # the tiny test repository's decoder depth, as listed for the official checkpoints
    monkeypatch.setitem(musicgen.KNOWN_DECODER_LAYERS, "mirprobe-test/tiny-musicgen", 2)
    return cache


def publish(cache, repo, model, commit, *, branch=None):
    """Put ``model`` in the cache as ``repo`` at ``commit`` (and ``branch`` pointing there)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    model.save_pretrained(folder / "snapshots" / commit, safe_serialization=True)
    if branch:
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / branch).write_text(commit)


@pytest.mark.parametrize(
    "extractor_cls, layers",
    [(MusicGen, ["0", "2"]), (EncodecLatents, ["encoder", "quantized"])],
)
def test_hub_weights_are_read_at_the_revision_asked_and_the_commit_recorded(
    hub_cache, extractor_cls, layers
):
    repo = f"mirprobe-test/tiny-{extractor_cls.name}"
    old = extractor_cls(params={**TINY, "seed": 0}).load(device="cpu")
    new = extractor_cls(params={**TINY, "seed": 1}).load(device="cpu")
    publish(hub_cache, repo, old.model, OLD)
    publish(hub_cache, repo, new.model, NEW, branch="main")
    batch = clips()
    want = {OLD: old.embed(batch, layers=layers), NEW: new.embed(batch, layers=layers)}
    assert not np.allclose(want[OLD][layers[0]], want[NEW][layers[0]])

    for revision, commit in [(OLD, OLD), ("main", NEW)]:
        loaded = extractor_cls(params={"weights": repo, "revision": revision}).load(device="cpu")
        got = loaded.embed(batch, layers=layers)
        for layer in layers:
            np.testing.assert_array_equal(got[layer], want[commit][layer])
        assert loaded.source_record() == {"weights": repo, "revision": revision, "commit": commit}

    # a branch neither the (offline) hub nor the cache knows: an error naming it
    with pytest.raises(ModelError, match=rf"{repo}'.*revision 'v2'"):
        extractor_cls(params={"weights": repo, "revision": "v2"}).load(device="cpu")


def test_the_commit_reaches_the_feature_profile(hub_cache, tmp_path):
    repo = "mirprobe-test/tiny-musicgen"
    publish(hub_cache, repo, MusicGen(params=TINY).load(device="cpu").model, NEW, branch="main")
    shard = tmp_path / "shard-000"
    shard.mkdir()
    rows = []
    for k, y in enumerate(clips()):
        write_wav(shard / f"c{k}.wav", y, sr=SR)
        rows.append({"clip_id": f"c{k}", "source": f"c{k}.wav", "status": "ok", "reason": ""})
        rows[-1]["n_samples"] = y.size
    pd.DataFrame(rows).to_csv(shard / "manifest.tsv", sep="\t", index=False)
    extractor = MusicGen(params={"weights": repo})
    profile = extract_shard(
        shard, tmp_path / "f.npz", extractor=extractor, layers=["2"], batch_size=2
    )
    assert profile["source"] == {"weights": repo, "revision": "main", "commit": NEW}


def test_a_local_directory_takes_no_revision(tmp_path):
    tiny = EncodecLatents(params=TINY).load(device="cpu")
    tiny.model.save_pretrained(tmp_path / "enc")
    local = EncodecLatents(params={"weights": str(tmp_path / "enc")}).load(device="cpu")
    assert local.source_record() == {
        "weights": str(tmp_path / "enc"),
        "revision": None,
        "commit": None,
    }
    with pytest.raises(ConfigError, match=r"revision '1{40}' given for the local directory"):
        EncodecLatents(params={"weights": str(tmp_path / "enc"), "revision": OLD})
