"""Tests of mirprobe.datasets.synthetic: params, splits, rendering, determinism,
learnability of the key from the audio.

The rendering tests share one tiny dataset (3 clips per key, 2 s) and need
Debian's fluidsynth with a General MIDI soundfont; without them they skip.
"""

import json
import shutil
import warnings

import numpy as np
import pytest
import soundfile as sf

from mirprobe.datasets import get_dataset_class
from mirprobe.datasets.base import SPLITS, file_sha256, read_metadata
from mirprobe.datasets.synthetic import (
    _CHORDS,
    KEY_LABELS,
    PARAMS_SCHEMA,
    PROGRESSIONS,
    SyntheticKey,
    assign_splits,
    plan_clip,
    split_counts,
)
from mirprobe.errors import ConfigError, DataError

TINY = {"clips_per_key": 3, "duration": 2.0, "sample_rate": 22050, "seed": 7}

requires_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not SyntheticKey(params=TINY).soundfont_exists(),
    reason="fluidsynth or its General MIDI soundfont is not installed "
    "(apt-get install fluidsynth fluid-soundfont-gm)",
)

# Krumhansl-Kessler probe-tone profiles, C major / C minor
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny dataset rendered once with one thread: (out_dir, provenance)."""
    out_dir = tmp_path_factory.mktemp("synkey") / "tiny"
    provenance = SyntheticKey(name="tiny", params=TINY).prepare(out_dir, threads=1)
    return out_dir, provenance


# -- params and pure functions (no fluidsynth needed) ---------------------------------


def test_registry_labels_and_defaults():
    cls = get_dataset_class("synthetic_key")
    assert cls is SyntheticKey
    ds = cls(name="syn")
    assert ds.kind == "synthetic_key" and ds.task_type == "key"
    assert ds.labels() == KEY_LABELS
    assert KEY_LABELS[:3] == ["C major", "Db major", "D major"]
    assert KEY_LABELS[11:14] == ["B major", "C minor", "Db minor"]
    assert len(set(KEY_LABELS)) == 24
    assert ds.params["clips_per_key"] == 20 and ds.num_clips() == 480
    assert set(ds.params) == set(PARAMS_SCHEMA["properties"])
    assert SyntheticKey(params={"clips_per_key": 5}).num_clips() == 120


def test_schema_documents_every_param():
    assert PARAMS_SCHEMA["additionalProperties"] is False
    for key, spec in PARAMS_SCHEMA["properties"].items():
        assert spec.get("description"), key
        assert "default" in spec, key


def test_soundfont_resolution(monkeypatch):
    monkeypatch.delenv("MIRPROBE_SOUNDFONT", raising=False)
    assert SyntheticKey().soundfont() == "/usr/share/sounds/sf2/FluidR3_GM.sf2"
    monkeypatch.setenv("MIRPROBE_SOUNDFONT", "/opt/fonts/gm.sf2")
    assert SyntheticKey().soundfont() == "/opt/fonts/gm.sf2"
    assert SyntheticKey(params={"soundfont": "/x/y.sf2"}).soundfont() == "/x/y.sf2"


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"clips_per_key": 0}, "clips_per_key"),
        ({"clips_per_key": 2}, "clips_per_key"),
        ({"no_such_param": 1}, "no_such_param"),
        ({"programs": [0, 128]}, "programs"),
        ({"tempo_range": [150, 70]}, "tempo_range"),
        ({"snr_db_range": [10]}, "snr_db_range"),
        ({"split_fractions": {"train": 0.5, "valid": 0.2, "test": 0.2}}, "split_fractions"),
        ({"split_fractions": {"train": 0.8, "valid": 0.2}}, "split_fractions"),
        ({"duration": -1.0}, "duration"),
    ],
)
def test_bad_params_raise_config_error_naming_the_key(params, named):
    with pytest.raises(ConfigError, match=named):
        SyntheticKey(name="bad", params=params)


@pytest.mark.parametrize("n", [3, 4, 5, 7, 10, 20, 33])
def test_split_counts_cover_every_split(n):
    counts = split_counts(n, fractions={"train": 0.6, "valid": 0.2, "test": 0.2})
    assert sum(counts.values()) == n
    assert min(counts.values()) >= 1
    if n == 10:
        assert counts == {"train": 6, "valid": 2, "test": 2}


def test_assign_splits_stratified_and_seeded():
    fractions = {"train": 0.6, "valid": 0.2, "test": 0.2}
    splits = assign_splits(clips_per_key=5, fractions=fractions, seed=0)
    assert sorted(splits) == list(range(120))
    for k in range(24):
        per_key = [splits[i] for i in range(k, 120, 24)]
        assert {s: per_key.count(s) for s in SPLITS} == {"train": 3, "valid": 1, "test": 1}
    assert splits == assign_splits(clips_per_key=5, fractions=fractions, seed=0)
    assert splits != assign_splits(clips_per_key=5, fractions=fractions, seed=1)


def test_progressions_are_diatonic_with_leading_tone_in_minor():
    major_scale = {0, 2, 4, 5, 7, 9, 11}
    minor_scale = {0, 2, 3, 5, 7, 8, 10, 11}  # natural minor + leading tone
    for name, pcs in _CHORDS["major"].items():
        assert set(pcs) <= major_scale, name
    for name, pcs in _CHORDS["minor"].items():
        assert set(pcs) <= minor_scale, name
    for progression in PROGRESSIONS["minor"]:
        assert any(11 in _CHORDS["minor"][c] for c in progression), progression
    assert len(PROGRESSIONS["major"]) >= 4 and len(PROGRESSIONS["minor"]) >= 4


def test_plan_is_per_clip_deterministic_and_in_key():
    params = SyntheticKey(params=TINY).params
    bigger = SyntheticKey(params={**TINY, "clips_per_key": 6}).params
    for i in (0, 13, 47, 71):
        plan = plan_clip(clip_index=i, params=params)
        # the same clip whatever the dataset size or call order
        assert plan == plan_clip(clip_index=i, params=bigger)
        assert f"{plan['tonic']} {plan['mode']}" == KEY_LABELS[i % 24]
        starts = [n[0] for n in plan["notes"]]
        ends = [n[1] for n in plan["notes"]]
        assert min(starts) >= 0 and max(ends) >= TINY["duration"]
        assert all(0 <= n[2] <= 127 and 1 <= n[3] <= 127 for n in plan["notes"])
        tonic = KEY_LABELS.index(KEY_LABELS[i % 24]) % 12
        scale = {0, 2, 4, 5, 7, 9, 11} if plan["mode"] == "major" else {0, 2, 3, 5, 7, 8, 10, 11}
        assert {(n[2] - tonic) % 12 for n in plan["notes"]} <= scale
    assert plan_clip(clip_index=0, params=params) != plan_clip(
        clip_index=0, params={**params, "seed": 8}
    )


def test_missing_soundfont_raises_data_error_naming_it(tmp_path):
    missing = tmp_path / "nowhere" / "GM.sf2"
    ds = SyntheticKey(name="syn", params={**TINY, "soundfont": str(missing)})
    with pytest.raises(DataError, match="nowhere/GM.sf2") as info:
        ds.prepare(tmp_path / "out")
    assert "fluid-soundfont-gm" in str(info.value)
    assert not (tmp_path / "out" / "metadata.csv").exists()


def test_missing_fluidsynth_raises_data_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without fluidsynth
    with pytest.raises(DataError, match="fluidsynth"):
        SyntheticKey(params=TINY).prepare(tmp_path / "out")


# -- rendering (needs fluidsynth) -----------------------------------------------------


@requires_fluidsynth
def test_tiny_render_metadata_and_provenance(tiny):
    out_dir, provenance = tiny
    table = read_metadata(out_dir / "metadata.csv")
    assert len(table) == 72
    assert table["clip_id"].tolist() == [f"synkey-{i:05d}" for i in range(72)]
    assert (table["song_id"] == table["clip_id"]).all()
    assert sorted(set(table["label"])) == sorted(KEY_LABELS)
    assert (table["offset"] == 0).all() and (table["duration"] == 2.0).all()
    for column in ("program", "tempo", "progression", "octave", "snr_db", "texture"):
        assert column in table.columns
    assert table["snr_db"].between(10, 30).all()
    assert table["tempo"].between(70, 150).all()
    # stratified: every key has one clip in each split
    per_key = table.groupby(["label", "split"]).size().unstack()
    assert (per_key[list(SPLITS)] == 1).all().all()

    json.dumps(provenance)
    assert provenance["params"]["clips_per_key"] == 3
    assert provenance["params"]["soundfont"].endswith(".sf2")
    assert provenance["clips_per_split"] == {"train": 24, "valid": 24, "test": 24}
    assert provenance["metadata_sha256"] == file_sha256(out_dir / "metadata.csv")
    assert "FluidSynth" in provenance["fluidsynth_version"]
    assert len(provenance["soundfont"]["sha256"]) == 64


@requires_fluidsynth
def test_tiny_render_audio_files(tiny):
    out_dir, _ = tiny
    table = read_metadata(out_dir / "metadata.csv")
    for path in table["audio_path"]:
        info = sf.info(out_dir / path)
        assert (info.samplerate, info.channels, info.frames) == (22050, 1, 44100), path
        assert info.subtype == "PCM_16"
        y, _ = sf.read(out_dir / path, dtype="float64")
        peak = np.max(np.abs(y))
        assert 0.85 < peak < 0.95, (path, peak)  # peak-normalised to 0.9, not clipped
        assert np.sqrt(np.mean(y**2)) > 0.02, path  # not silent
        # the music is in every part of the clip, not only its start
        assert np.sqrt(np.mean(y[-5000:] ** 2)) > 0.01, path
    assert not list(out_dir.rglob(".*.wav")), "temporary files left behind"


@requires_fluidsynth
def test_render_is_byte_identical_across_thread_counts(tiny, tmp_path):
    out_dir, provenance = tiny
    again = SyntheticKey(name="tiny", params=TINY).prepare(tmp_path / "again", threads=2)
    assert again == provenance
    first = sorted(p.relative_to(out_dir) for p in out_dir.rglob("*") if p.is_file())
    second = sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*"))
    assert first == [p for p in second if (tmp_path / "again" / p).is_file()]
    for rel in first:
        assert (out_dir / rel).read_bytes() == (tmp_path / "again" / rel).read_bytes(), rel


def _key_template_estimate(y, *, sr):
    """Key index (KEY_LABELS order) by Krumhansl-Kessler template correlation."""
    import librosa

    with warnings.catch_warnings():
        # librosa warns that the lowest CQT octaves' n_fft exceeds the decimated signal
        warnings.simplefilter("ignore", UserWarning)
        chroma = librosa.feature.chroma_cqt(y=y, sr=sr).mean(axis=1)
    templates = np.array(
        [np.roll(KK_MAJOR, k) for k in range(12)] + [np.roll(KK_MINOR, k) for k in range(12)]
    )
    templates = templates - templates.mean(axis=1, keepdims=True)
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    chroma = chroma - chroma.mean()
    return int(np.argmax(templates @ chroma))


@requires_fluidsynth
def test_key_is_learnable_from_audio(tiny):
    out_dir, _ = tiny
    table = read_metadata(out_dir / "metadata.csv")
    exact = tonic = 0
    for row in table.itertuples():
        y, sr = sf.read(out_dir / row.audio_path, dtype="float32")
        estimate = _key_template_estimate(y, sr=sr)
        truth = KEY_LABELS.index(row.label)
        exact += estimate == truth
        tonic += estimate % 12 == truth % 12
    exact, tonic = exact / len(table), tonic / len(table)
    print(
        f"Krumhansl chroma_cqt template on {len(table)} clips: exact {exact:.3f}, tonic {tonic:.3f}"
    )
    assert exact >= 0.3  # chance is 1/24 = 0.042
    assert tonic >= exact
