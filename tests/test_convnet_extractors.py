"""CLMR (SampleCNN) and Choi et al. convnets: random-init shapes, determinism, and
checkpoints in their real formats through the real loader."""

import hashlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mirprobe.errors import ConfigError, DataError, ModelError  # noqa: E402
from mirprobe.extractors import build_extractor  # noqa: E402
from mirprobe.extractors.choi import Choi  # noqa: E402
from mirprobe.extractors.clmr import CLMR, FRAME  # noqa: E402

RANDOM = {"random_weights": True}


def clips(sr, seconds, n=2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return [
        (0.3 * np.sin(2 * np.pi * (220 + 110 * k) * t) + 0.05 * rng.standard_normal(t.size)).astype(
            np.float32
        )
        for k in range(n)
    ]


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def clmr():
    return CLMR(params=RANDOM).load(device="cpu")


@pytest.fixture(scope="module")
def choi():
    return Choi(params=RANDOM).load(device="cpu")


def test_clmr_shapes_frames_and_determinism(clmr):
    batch = clips(22050, 6.0)  # two 59,409-sample frames each, tail dropped
    out = clmr.embed(batch, layers=["encoder"])["encoder"]
    assert out.shape == (2, 512) and out.dtype == np.float32 and np.isfinite(out).all()
    again = build_extractor({"extractor": "clmr", "params": RANDOM}).embed(
        batch, layers=["encoder"]
    )
    np.testing.assert_array_equal(out, again["encoder"])
    # the clip embedding is the mean of its frames' embeddings; batches do not matter
    y = batch[0]
    frames = clmr.embed([y[:FRAME], y[FRAME : 2 * FRAME]], layers=["encoder"])["encoder"]
    np.testing.assert_allclose(out[0], frames.mean(0), rtol=1e-5, atol=1e-6)
    with torch.inference_mode():
        direct = clmr.model(torch.from_numpy(y[:FRAME])[None, None])
        assert direct.shape == (1, 512, 1)  # jukemir's longer frame still ends at 512 x 1
        direct = direct.flatten(1).numpy()
    np.testing.assert_allclose(frames[0], direct[0], rtol=1e-5, atol=1e-6)
    short = clmr.embed([y[:1000]], layers=["encoder"])["encoder"]  # zero-padded to one frame
    assert short.shape == (1, 512)
    assert not np.allclose(out[0], out[1])
    assert not np.allclose(out, CLMR(params={**RANDOM, "seed": 1}).embed(batch)["encoder"])


@pytest.mark.parametrize("layout", ["lightning", "simclr", "bare"])
def test_clmr_checkpoint_formats_load_through_the_real_loader(tmp_path, clmr, layout):
    encoder = {f"sequential.{k}": v for k, v in clmr.model.state_dict().items()}
    head = {"fc.weight": torch.zeros(50, 512), "fc.bias": torch.zeros(50)}
    if layout == "lightning":  # CLMR 2.x: a PyTorch Lightning checkpoint
        state = {f"model.encoder.{k}": v for k, v in encoder.items()}
        state["model.projector.0.weight"] = torch.zeros(512, 512)
        checkpoint = {"pytorch-lightning_version": "1.3.8", "epoch": 3, "state_dict": state}
    elif layout == "simclr":  # CLMR 1.x: the SimCLR module's state_dict
        checkpoint = {f"encoder.{k}": v for k, v in {**encoder, **head}.items()}
    else:
        checkpoint = {**encoder, **head}
    path = tmp_path / "clmr_checkpoint.pt"
    torch.save(checkpoint, path)
    loaded = CLMR(params={"weights": str(path), "sha256": sha256(path)}).load(device="cpu")
    batch = clips(22050, 3.0)
    np.testing.assert_array_equal(
        loaded.embed(batch)["encoder"], clmr.embed(batch, layers=["encoder"])["encoder"]
    )


def test_choi_shapes_layers_and_determinism(choi):
    batch = clips(12000, 31.0)  # only the first 29 s count
    out = choi.embed(batch, layers=["all", "layer1", "layer5"])
    assert out["all"].shape == (2, 160) and out["layer5"].shape == (2, 32)
    np.testing.assert_array_equal(out["all"][:, :32], out["layer1"])
    np.testing.assert_array_equal(out["all"][:, 128:], out["layer5"])
    assert np.isfinite(out["all"]).all() and not np.allclose(out["all"][0], out["all"][1])
    again = Choi(params=RANDOM).load().embed(batch, layers=["all"])["all"]
    np.testing.assert_array_equal(out["all"], again)
    first = choi.embed([y[: 29 * 12000] for y in batch], layers=["all"])["all"]
    np.testing.assert_allclose(out["all"], first, rtol=1e-5, atol=1e-6)
    assert Choi.available_layers({}) == ("all", "layer1", "layer2", "layer3", "layer4", "layer5")


def test_choi_maps_shrink_as_raw_vgg_does_for_96_mel_bands(choi):
    with torch.inference_mode():
        x = torch.from_numpy(choi.window(clips(12000, 29.0, n=1)[0]))[None]
        db = choi.model.log_mel(x)
        maps = choi.model(x)
    assert db.shape == (1, 1, 96, 1360)
    # kapre's decibels: the clip's maximum at 0 dB, an 80 dB range below it
    assert float(db.max()) == 0.0 and float(db.min()) >= -80.0
    assert [tuple(m.shape[2:]) for m in maps] == [(48, 340), (16, 85), (8, 17), (4, 4), (1, 1)]


def test_choi_short_clips_are_tiled_or_zero_padded(choi):
    short = clips(12000, 7.0, n=1)[0]
    tiled = np.tile(short, 5)[: 29 * 12000]
    np.testing.assert_allclose(
        choi.embed([short])["all"], choi.embed([tiled])["all"], rtol=1e-5, atol=1e-6
    )
    padded = Choi(params={**RANDOM, "short_clips": "zero_pad"}).load()
    np.testing.assert_allclose(
        padded.embed([short])["all"],
        choi.embed([np.pad(short, (0, 22 * 12000))])["all"],
        rtol=1e-5,
        atol=1e-6,
    )
    assert not np.allclose(padded.embed([short])["all"], choi.embed([short])["all"])


def test_choi_state_dict_round_trip(tmp_path, choi):
    path = tmp_path / "choi.pt"
    torch.save(choi.model.state_dict(), path)
    loaded = Choi(params={"weights": str(path), "sha256": sha256(path)}).load()
    batch = clips(12000, 5.0)
    np.testing.assert_array_equal(loaded.embed(batch)["all"], choi.embed(batch)["all"])


@pytest.mark.parametrize("cls", [CLMR, Choi])
def test_weight_errors_name_the_file(tmp_path, cls):
    missing = tmp_path / "no-such-weights.pt"
    with pytest.raises(ModelError, match="no-such-weights.pt.*not found"):
        cls(params={"weights": str(missing), "sha256": "0" * 64}).load()
    path = tmp_path / "weights.pt"
    torch.save({"x": torch.zeros(1)}, path)
    with pytest.raises(ModelError, match="weights.pt.*checksum mismatch"):
        cls(params={"weights": str(path), "sha256": "0" * 64}).load()
    with pytest.raises(ModelError, match="weights.pt.*does not fit"):
        cls(params={"weights": str(path), "sha256": sha256(path)}).load()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="garbage.pt"):
        cls(params={"weights": str(garbage), "sha256": sha256(garbage)}).load()
    if cls is Choi:
        with pytest.raises(ConfigError, match="sha256"):
            cls(params={})


def test_url_weights_are_fetched_into_the_cache_and_verified(tmp_path, choi, monkeypatch):
    from mirprobe.extractors import torch_weights

    source = tmp_path / "src" / "choi.pt"
    source.parent.mkdir()
    torch.save(choi.model.state_dict(), source)
    digest = sha256(source)
    calls = []

    def fake_fetch(remote, *, root):
        calls.append(remote)
        dest = root / remote.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(source.read_bytes())
        return dest

    monkeypatch.setattr("mirprobe.download.fetch", fake_fetch)
    params = {
        "weights": "https://example.org/models/choi.pt",
        "sha256": digest,
        "cache_dir": str(tmp_path / "cache"),
    }
    loaded = Choi(params=params).load()
    assert calls[0].urls == ("https://example.org/models/choi.pt",)
    assert calls[0].checksum == digest
    assert (tmp_path / "cache" / "sha256" / digest).is_file()  # content-addressed
    batch = clips(12000, 3.0)
    np.testing.assert_array_equal(loaded.embed(batch)["all"], choi.embed(batch)["all"])
    assert torch_weights.DEFAULT_CACHE.startswith("~")


def test_clmr_frame_rules_complete_and_jukemirs(clmr):
    y = clips(22050, 6.0, n=1)[0]
    jukemir = CLMR(params={**RANDOM, "frame_rule": "jukemir"}).load(device="cpu")

    def jukemirs_frames(audio):  # representations/clmr/main.py, verbatim
        return torch.cat(torch.split(torch.from_numpy(audio)[None], FRAME, dim=1)[:-1], dim=0)

    for n in (2 * FRAME, 2 * FRAME + 100, FRAME + 1):
        np.testing.assert_array_equal(jukemir.frames(y[:n]), jukemirs_frames(y[:n]).numpy())
    assert len(jukemir.frames(y[: 2 * FRAME])) == 1  # a complete last frame is dropped too
    assert len(clmr.frames(y[: 2 * FRAME])) == 2  # ours keeps it
    assert len(clmr.frames(y[: 2 * FRAME + 100])) == 2
    np.testing.assert_allclose(
        jukemir.embed([y[: 2 * FRAME]])["encoder"],
        clmr.embed([y[:FRAME]], layers=["encoder"])["encoder"],
        rtol=1e-5,
        atol=1e-6,
    )
    for n in (FRAME, 1000):
        with pytest.raises(DataError, match=f"clip of {n} samples is one frame"):
            jukemir.embed([y[:n]])


def _clmr_zip(tmp_path, clmr):
    """CALM's checkpoint layout: a Lightning checkpoint inside the release's zip."""
    import zipfile

    from mirprobe.extractors.clmr import DEFAULT_ZIP_MEMBER

    encoder = {f"model.encoder.sequential.{k}": v for k, v in clmr.model.state_dict().items()}
    checkpoint = tmp_path / "clmr_epoch=10000.ckpt"
    torch.save({"pytorch-lightning_version": "1.3.8", "state_dict": encoder}, checkpoint)
    archive = tmp_path / "clmr_magnatagatune_mlp.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(checkpoint, DEFAULT_ZIP_MEMBER)
    return archive


def test_clmr_defaults_to_calms_zip_and_member(tmp_path, clmr):
    from mirprobe.extractors.clmr import DEFAULT_WEIGHTS, DEFAULT_ZIP_MEMBER

    params = CLMR().params
    assert (
        params["weights"]
        == DEFAULT_WEIGHTS
        == ("https://github.com/Spijkervet/CLMR/releases/download/2.1/clmr_magnatagatune_mlp.zip")
    )
    assert (
        params["zip_member"]
        == DEFAULT_ZIP_MEMBER
        == ("clmr_magnatagatune_mlp/clmr_epoch=10000.ckpt")
    )
    assert params["sha256"] is None and params["frame_rule"] == "complete"
    archive = _clmr_zip(tmp_path, clmr)
    loaded = CLMR(params={"weights": str(archive), "sha256": sha256(archive)}).load()
    batch = clips(22050, 3.0)
    np.testing.assert_array_equal(
        loaded.embed(batch)["encoder"], clmr.embed(batch, layers=["encoder"])["encoder"]
    )
    with pytest.raises(ModelError, match="no member 'other.ckpt'"):
        CLMR(
            params={"weights": str(archive), "sha256": sha256(archive), "zip_member": "other.ckpt"}
        ).load()


def test_clmr_without_sha256_downloads_once_and_gives_the_digest(tmp_path, clmr):
    import http.server
    import threading

    body = _clmr_zip(tmp_path, clmr).read_bytes()
    served = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            served.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/clmr_magnatagatune_mlp.zip"
        params = {"weights": url, "cache_dir": str(tmp_path / "cache")}
        digest = hashlib.sha256(body).hexdigest()
        for _ in range(2):
            with pytest.raises(ModelError, match=f"sha256 {digest}.*params: sha256"):
                CLMR(params=params).load()
        assert served == ["/clmr_magnatagatune_mlp.zip"]  # downloaded once
        loaded = CLMR(params={**params, "sha256": digest}).load()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    batch = clips(22050, 3.0)
    np.testing.assert_array_equal(
        loaded.embed(batch)["encoder"], clmr.embed(batch, layers=["encoder"])["encoder"]
    )
