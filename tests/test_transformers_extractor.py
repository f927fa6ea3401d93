"""``extractor: transformers``: tiny random wav2vec2, HuBERT (MERT's layout), AST and Whisper
checkpoints written with save_pretrained (safetensors), read back by configuration alone."""

import json

import numpy as np
import pytest
from tiny_checkpoints import KINDS, save_tiny

from conftest import SMALL, requires_fluidsynth, run, write_config
from mirprobe.errors import ConfigError, ModelError
from mirprobe.extractors.hf_transformers import TransformersEncoder

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    return {kind: str(save_tiny(kind, root / kind)) for kind in KINDS}


def clips(rate, seconds=(1.0, 1.5, 1.0), seed=0):
    rng = np.random.default_rng(seed)
    return [0.1 * rng.standard_normal(int(rate * s)).astype(np.float32) for s in seconds]


def full_model_pooled(folder, y):
    """Every hidden state of the whole model, as transformers returns them, mean-pooled."""
    from transformers import AutoFeatureExtractor, AutoModel

    fe = AutoFeatureExtractor.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    if model.config.is_encoder_decoder:
        model = model.get_encoder()
    inputs = fe([y], sampling_rate=fe.sampling_rate, return_tensors="pt")
    inputs = {k: v for k, v in inputs.items() if k in ("input_values", "input_features")}
    with torch.inference_mode():
        states = model(**inputs, output_hidden_states=True).hidden_states
    steps = states[0].shape[1]
    if getattr(fe, "n_samples", None):  # Whisper: the frames covering the audio
        steps = int(np.ceil(steps * len(y) / fe.n_samples))
    return [s[0, :steps].mean(0).numpy() for s in states]


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_encoder_gives_the_full_models_hidden_states(tiny_folders, kind):
    extractor = TransformersEncoder(params={"model": tiny_folders[kind]})
    extractor.load()
    # one window: 1 s, or AST's whole input (64 frames, 0.655 s)
    y = clips(extractor.sample_rate, seconds=(1.0,))[0][: extractor.window_samples()]
    reference = full_model_pooled(tiny_folders[kind], y)
    layers = extractor.available_layers(extractor.params)
    assert len(layers) == len(reference)
    blocks = list(getattr(extractor.blocks_owner, extractor.blocks_name))
    for deepest in range(len(layers)):
        calls = [0] * len(blocks)
        handles = [
            block.register_forward_hook(
                lambda *a, i=i, calls=calls: calls.__setitem__(i, calls[i] + 1)
            )
            for i, block in enumerate(blocks)
        ]
        try:
            out = extractor.embed([y], layers=[str(k) for k in range(deepest + 1)])
        finally:
            for handle in handles:
                handle.remove()
        # blocks past the deepest requested one never ran
        assert calls == [1] * max(deepest, 1) + [0] * (len(blocks) - max(deepest, 1))
        for k in range(deepest + 1):
            np.testing.assert_allclose(out[str(k)][0], reference[k], rtol=1e-5, atol=1e-6)
    assert list(getattr(extractor.blocks_owner, extractor.blocks_name)) == blocks


def test_sample_rate_and_layers_come_from_the_checkpoint_folder(tiny_folders):
    assert TransformersEncoder.sample_rate_for({"model": tiny_folders["hubert"]}) == 24000
    assert TransformersEncoder.sample_rate_for({"model": tiny_folders["ast"]}) == 16000
    assert TransformersEncoder.available_layers({"model": tiny_folders["whisper"]}) == (
        "0",
        "1",
        "2",
    )
    with pytest.raises(ConfigError, match="params.sample_rate 16000 but its preprocessor_config"):
        TransformersEncoder.sample_rate_for({"model": tiny_folders["hubert"], "sample_rate": 16000})


def test_hub_id_not_cached_needs_a_declared_sample_rate(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    params = {"model": "someone/not-cached-here"}
    with pytest.raises(ConfigError, match="declare params.sample_rate"):
        TransformersEncoder.sample_rate_for(params)
    with pytest.raises(ConfigError, match="declare params.num_layers"):
        TransformersEncoder.available_layers(params)
    declared = {**params, "sample_rate": 24000, "num_layers": 12}
    assert TransformersEncoder.sample_rate_for(declared) == 24000
    assert TransformersEncoder.available_layers(declared)[-1] == "12"


def test_missing_folder_and_unsafe_weights_are_model_errors(tmp_path, tiny_folders):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "preprocessor_config.json").write_text(
        json.dumps({"sampling_rate": 16000})
    )
    extractor = TransformersEncoder(params={"model": str(tmp_path / "empty"), "num_layers": 2})
    with pytest.raises(ModelError, match="has no config.json"):
        extractor.load()
    # a pickle checkpoint (pytorch_model.bin, no safetensors) is refused
    import shutil

    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_folders["hubert"], pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="cannot load AutoModel"):
        TransformersEncoder(params={"model": str(pickled)}).load()


def test_random_weights_are_seeded_and_differ_from_the_checkpoint(tiny_folders):
    folder = tiny_folders["hubert"]
    y = clips(24000)
    trained = TransformersEncoder(params={"model": folder}).embed(y, layers=["2"])["2"]
    random = [
        TransformersEncoder(params={"model": folder, "random_weights": True, "seed": s}).embed(
            y, layers=["2"]
        )["2"]
        for s in (0, 0, 1)
    ]
    np.testing.assert_array_equal(random[0], random[1])
    assert not np.allclose(random[0], random[2])
    assert not np.allclose(random[0], trained)


def test_long_clips_are_windowed_and_pooled_by_steps(tiny_folders):
    folder = tiny_folders["wav2vec2"]
    rate = 16000
    y = clips(rate, seconds=(2.5,))[0]
    params = {"model": folder, "window_seconds": 1.0, "min_tail_seconds": 0.25}
    windowed = TransformersEncoder(params=params).embed([y], layers=["1"])["1"][0]
    whole = TransformersEncoder(params={"model": folder}).embed
    parts = [
        whole([y[a:b]], layers=["1"])["1"][0]
        for a, b in ((0, 16000), (16000, 32000), (32000, 40000))
    ]
    steps = np.array([799, 799, 399])  # conv front end: m = (n - 10) // 5 + 1, (m - 4) // 4 + 1
    expected = (np.stack(parts) * steps[:, None]).sum(0) / steps.sum()
    np.testing.assert_allclose(windowed, expected, rtol=1e-5, atol=1e-6)
    maxed = TransformersEncoder(params={"model": folder, "pooling": "max"}).embed(
        [y], layers=["1"]
    )["1"][0]
    assert np.all(maxed >= whole([y], layers=["1"])["1"][0] - 1e-6)


@pytest.mark.workflow
@requires_fluidsynth
def test_each_architecture_runs_through_the_workflow_by_configuration(tmp_path, tiny_folders):
    # each architecture's wiring is one cell; one architecture (HuBERT) also gives two
    # rows from one extraction (layer 0, the front end's output, and block 2)
    layers = {kind: [0, 2] if kind == "hubert" else [2] for kind in KINDS}
    representations = {
        kind: {
            "extractor": "transformers",
            "label": f"Tiny {kind}",
            "params": {"model": folder},
            "layers": layers[kind],
        }
        for kind, folder in tiny_folders.items()
    }
    representations["hubert_random"] = {
        "extractor": "transformers",
        "label": "Tiny hubert (random weights)",
        "params": {"model": tiny_folders["hubert"], "random_weights": True},
        "layers": [1],
    }
    # what is checked is the wiring (rows, records, sample rates), not the probes: the
    # smallest task (3 clips per key, one shard) and a single short probe config keep
    # these 6 cells' jobs few (each imports torch)
    datasets = json.loads(json.dumps(SMALL["datasets"]))
    datasets["synth_key"]["params"] |= {"clips_per_key": 3, "duration": 1.0}
    datasets["synth_key"]["shard_size"] = 72
    probe = {**SMALL["probe"], "grid": {**SMALL["probe"]["grid"], "hidden_sizes": [[]]}}
    probe["max_steps"] = 40
    write_config(tmp_path, representations=representations, datasets=datasets, probe=probe)
    run(tmp_path)
    rows = (tmp_path / "results" / "table.csv").read_text().splitlines()
    titles = [row.split(",")[0] for row in rows[1:]]
    # rows in the config's order (write_config dumps its keys sorted); a representation
    # with one layer is its label alone
    assert titles == [
        f"Tiny {name} L{layer}" if len(layers.get(name, ())) > 1 else rep["label"]
        for name, rep in sorted(representations.items())
        for layer in layers.get(name, (None,))
    ]
    for kind in KINDS:
        stats = tmp_path / "results" / "provenance" / "synth_key" / kind / f"{layers[kind][0]}.json"
        record = json.loads(stats.read_text())
        source = record["stages"]["extract"][0]["source"]
        assert source["model"] == tiny_folders[kind]
        assert source["trust_remote_code"] is False and source["random_weights"] is False
        assert source["commit"] is None
    # HuBERT resampled to its own 24 kHz, the others to 16 kHz
    audio = tmp_path / "results" / "audio" / "synth_key"
    assert sorted(p.name for p in audio.iterdir()) == ["sr16000", "sr24000"]


def mert_like(folder, tmp_path):
    """The tiny HuBERT laid out as MERT's hub repository is: a config whose model_type and
    auto_map name remote code, and pickle weights (pytorch_model.bin) only."""
    import hashlib
    import shutil

    from safetensors.torch import load_file

    mert = tmp_path / "mert"
    shutil.copytree(folder, mert)
    config = json.loads((mert / "config.json").read_text())
    config |= {
        "model_type": "mert_model",
        "architectures": ["MERTModel"],
        "auto_map": {"AutoModel": "modeling_MERT.MERTModel"},
    }
    (mert / "config.json").write_text(json.dumps(config))
    torch.save(load_file(mert / "model.safetensors"), mert / "pytorch_model.bin")
    (mert / "model.safetensors").unlink()
    return mert, hashlib.sha256((mert / "pytorch_model.bin").read_bytes()).hexdigest()


def test_mert_layout_loads_through_hubert_model_without_remote_code(tmp_path, tiny_folders):
    mert, digest = mert_like(tiny_folders["hubert"], tmp_path)
    y = clips(24000)
    # AutoModel needs MERT's remote code, which is off
    with pytest.raises(ModelError, match="cannot load"):
        TransformersEncoder(params={"model": str(mert), "weights_sha256": digest}).load()
    params = {"model": str(mert), "model_class": "HubertModel", "weights_sha256": digest}
    extractor = TransformersEncoder(params=params)
    out = extractor.embed(y, layers=["0", "3"])
    reference = TransformersEncoder(params={"model": tiny_folders["hubert"]}).embed(
        y, layers=["0", "3"]
    )
    for layer in ("0", "3"):
        np.testing.assert_array_equal(out[layer], reference[layer])
    source = extractor.source_record()
    assert source["model_class"] == "HubertModel" and source["weights_sha256"] == digest
    assert source["trust_remote_code"] is False
    # the pickle is read only when its digest is the one given
    wrong = {**params, "weights_sha256": "0" * 64}
    with pytest.raises(ModelError, match="params.weights_sha256 says 0000"):
        TransformersEncoder(params=wrong).load()
    with pytest.raises(ModelError, match="cannot load HubertModel"):
        TransformersEncoder(params={**params, "weights_sha256": None}).load()
    with pytest.raises(ConfigError, match="not a transformers model class"):
        TransformersEncoder(params={**params, "model_class": "NoSuchModel"}).load()


@pytest.mark.workflow
def test_paper_config_plans_mert_at_every_layer_with_its_published_rows(tmp_path):
    import re

    from conftest import REPO, snakemake
    from mirprobe.config import load_config

    paper = REPO / "configs" / "paper.yaml"
    config = load_config(paper)
    plan = snakemake(tmp_path, "-n", "--configfile", str(paper), "--cores", "8")
    plan = plan.stdout + plan.stderr
    jobs = re.findall(
        r"rule train_probe:.*?wildcards: dataset=(\S+), representation=(mert\S*), layer=(\S+)\n",
        plan,
        flags=re.S,
    )
    planned = {}
    for dataset, representation, layer in jobs:
        planned.setdefault(representation, {}).setdefault(dataset, set()).add(int(layer))
    expected = {"mert_95m": set(range(13)), "mert_330m": set(range(25)), "mert_95m_random": {6, 12}}
    assert planned == {r: {d: layers for d in config["datasets"]} for r, layers in expected.items()}
    assert "results/audio/gtzan_ff/sr24000/" in plan  # resampled to MERT's own rate
    published = {row["label"]: row["values"] for row in config["published"]}
    assert published["MERT-95M RVQ-VAE (MERT paper)"]["magnatagatune"] == {
        "roc_auc_macro": 91.0,
        "ap_macro": 39.3,
    }
    assert published["MERT-330M RVQ-VAE (MERT paper)"]["giantsteps_clips"] == {
        "weighted_score": 65.6
    }
    assert published["HuBERT-base music (MERT paper)"]["emomusic"] == {
        "r2_valence": 42.1,
        "r2_arousal": 66.5,
    }
