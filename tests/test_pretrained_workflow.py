"""configs/pretrained.yaml: it names every published checkpoint the sota_tagger knows,
and the workflow runs its trained models offline from a config weights_dir."""

import copy
import json

import numpy as np
import yaml

from conftest import REPO, SMALL, fixture_path, requires_fluidsynth, run
from mirprobe.audio import load_audio
from mirprobe.config import validate_config
from mirprobe.extractors.choi2016 import PRETRAINED as CHOI2016_PRETRAINED
from mirprobe.extractors.sota_tagging import PRETRAINED, SotaTagger

CONFIG = REPO / "configs" / "pretrained.yaml"


def test_pretrained_config_has_every_published_checkpoint():
    config = validate_config(yaml.safe_load(CONFIG.read_text()))
    pairs = {
        (entry["params"]["dataset"], entry["params"]["model"])
        for entry in config["representations"].values()
        if entry["extractor"] == "sota_tagger"
    }
    assert pairs == set(PRETRAINED)
    assert {e["extractor"] for e in config["representations"].values()} >= {"musicnn"}
    assert all(
        e["params"].get("weights") is None  # the published URL + digest, nothing local
        for e in config["representations"].values()
        if e["extractor"] == "sota_tagger"
    )


def test_pretrained_config_has_both_choi_2016_taggers_with_their_released_weights():
    config = validate_config(yaml.safe_load(CONFIG.read_text()))
    entries = [e for e in config["representations"].values() if e["extractor"] == "choi2016"]
    assert sorted(e["params"]["model"] for e in entries) == sorted(CHOI2016_PRETRAINED)
    assert all(e["params"]["weights"] is None for e in entries)  # the released URL + digest


@requires_fluidsynth
def test_the_trained_taggers_run_offline_from_the_config_weights_dir(tmp_path, monkeypatch):
    """A reduced copy of pretrained.yaml: SMALL's tiny task, its MusiCNN-architecture
    taggers (3 s windows; FCN and CRNN are checked in test_sota_tagging)."""
    monkeypatch.delenv("MIRPROBE_WEIGHTS_DIR", raising=False)
    weights = fixture_path("weights")
    config = yaml.safe_load(CONFIG.read_text())
    cache = tmp_path / "cache"
    config["datasets"] = copy.deepcopy(SMALL["datasets"])
    # the taggers' wiring is checked, not the probes: one shard, one short probe config
    config["datasets"]["synth_key"]["params"]["clips_per_key"] = 3
    config["datasets"]["synth_key"]["shard_size"] = 72
    config["probe"] = copy.deepcopy(SMALL["probe"])
    config["probe"]["grid"]["hidden_sizes"] = [[]]
    config["probe"]["max_steps"] = 40
    config["device"] = "cpu"
    config["weights_dir"] = [str(weights)]
    config["representations"] = {
        name: {**entry, "params": {**entry["params"], "cache_dir": str(cache)}}
        for name, entry in config["representations"].items()
        if entry["extractor"] == "sota_tagger" and entry["params"]["model"] == "musicnn"
    }
    assert len(config["representations"]) == 2
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    run(workdir)
    table = (workdir / "results" / "table.md").read_text()
    for entry in config["representations"].values():
        assert f"| {entry['label']} " in table
    # found by digest in the fixture folder, used in place: nothing downloaded or copied
    assert not (cache / "sha256").exists()
    index = json.loads((cache / "weights_dir_index.json").read_text())
    found = {digest for _, _, digest in index.values()}
    assert {PRETRAINED[("jamendo", "musicnn")][1], PRETRAINED[("mtat", "musicnn")][1]} <= found
    # and the features are the trained model's: the first clips, embedded directly
    shard = workdir / "results" / "features" / "synth_key" / "won_musicnn_mtat" / "shard-000.npz"
    with np.load(shard) as features:
        clip_ids, pooled = list(features["clip_ids"][:2]), features["layer:pooled"][:2]
    audio = workdir / "results" / "audio" / "synth_key" / "sr16000" / "shard-000"
    checkpoint = weights / "sota_music_tagging" / "fork_e8f5b2e6" / "mtat" / "musicnn"
    params = {"model": "musicnn", "dataset": "mtat", "cache_dir": str(tmp_path / "direct")}
    params |= {"weights": str(checkpoint / "best_model.pth")}
    params |= {"sha256": PRETRAINED[("mtat", "musicnn")][1]}
    batch = [load_audio(audio / f"{clip}.wav", sr=16000) for clip in clip_ids]
    direct = SotaTagger(params=params).embed(batch, layers=["pooled"])["pooled"]
    np.testing.assert_allclose(pooled, direct, rtol=1e-5, atol=1e-5)
