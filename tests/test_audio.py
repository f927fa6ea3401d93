import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conftest import fixture_path
from mirprobe.audio import load_audio, read_manifest, resample_shard, shard_slices
from mirprobe.datasets.base import file_sha256, write_metadata
from mirprobe.errors import AudioDecodeError, ConfigError


def tone(seconds=1.0, sr=22050, freq=440.0):
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_load_resamples_and_mixes_to_mono(tmp_path):
    stereo = np.stack([tone(), tone(freq=220)], axis=1)
    sf.write(tmp_path / "a.wav", stereo, 22050)
    y = load_audio(tmp_path / "a.wav", sr=16000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 16000) <= 1


def test_offset_and_duration_cut_the_clip(tmp_path):
    sf.write(tmp_path / "a.wav", tone(seconds=3.0), 22050)
    y = load_audio(tmp_path / "a.wav", sr=22050, offset=1.0, duration=1.5)
    assert len(y) == int(1.5 * 22050)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(AudioDecodeError, match=r"nope\.wav: file not found"):
        load_audio(tmp_path / "nope.wav", sr=22050)


def test_empty_file_is_named(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioDecodeError, match=r"empty\.wav: empty file"):
        load_audio(tmp_path / "empty.wav", sr=22050)


def test_corrupt_file_is_named(tmp_path):
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 10)
    with pytest.raises(AudioDecodeError, match=r"corrupt\.wav: cannot decode"):
        load_audio(tmp_path / "corrupt.wav", sr=22050)


def test_truncated_file_is_named(tmp_path):
    sf.write(tmp_path / "full.wav", tone(seconds=2.0), 22050, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioDecodeError, match=r"cut\.wav: (truncated|cannot decode)"):
        load_audio(tmp_path / "cut.wav", sr=22050, duration=2.0)


def test_silent_clip_warns_but_loads(tmp_path):
    sf.write(tmp_path / "silence.wav", np.zeros(22050, np.float32), 22050)
    with pytest.warns(UserWarning, match="silent"):
        y = load_audio(tmp_path / "silence.wav", sr=22050)
    assert not y.any()


def test_real_ogg_fixture_decodes():
    folder = fixture_path("audio")
    path = sorted(folder.glob("*.ogg"))[0]
    y = load_audio(path, sr=22050, duration=2.0)
    assert len(y) == 44100 and np.abs(y).max() > 0.01


def test_shard_slices_cover_every_clip_once():
    slices = shard_slices(10, 4)
    assert slices == [(0, 4), (4, 8), (8, 10)]
    assert shard_slices(3, 100) == [(0, 3)]


def _dataset(tmp_path, *, corrupt=False):
    (tmp_path / "audio").mkdir()
    rows = []
    for i in range(5):
        sf.write(tmp_path / "audio" / f"c{i}.wav", tone(freq=200 + 50 * i), 22050)
        rows.append(
            {
                "clip_id": f"c{i}",
                "audio_path": f"audio/c{i}.wav",
                "offset": 0.0,
                "duration": 1.0,
                "split": "train",
                "label": "C major",
                "song_id": f"c{i}",
            }
        )
    if corrupt:
        (tmp_path / "audio" / "c3.wav").write_bytes(b"garbage" * 100)
    write_metadata(pd.DataFrame(rows), tmp_path / "metadata.csv")
    return tmp_path / "metadata.csv"


def test_resample_shard_writes_wavs_and_manifest(tmp_path):
    metadata = _dataset(tmp_path)
    manifest = resample_shard(
        metadata, tmp_path / "out" / "shard-001", shard=1, shard_size=2, sr=16000
    )
    assert list(manifest["clip_id"]) == ["c2", "c3"]
    assert (manifest["status"] == "ok").all()
    y, sr = sf.read(tmp_path / "out" / "shard-001" / "c2.wav")
    assert sr == 16000 and y.ndim == 1
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_bad_clip_stops_the_run_by_default(tmp_path):
    metadata = _dataset(tmp_path, corrupt=True)
    with pytest.raises(AudioDecodeError, match=r"c3\.wav: cannot decode"):
        resample_shard(metadata, tmp_path / "out" / "s", shard=0, shard_size=10, sr=16000)
    assert not (tmp_path / "out" / "s").exists()


def test_bad_clip_is_recorded_when_excluded(tmp_path):
    metadata = _dataset(tmp_path, corrupt=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resample_shard(
            metadata,
            tmp_path / "out" / "s",
            shard=0,
            shard_size=10,
            sr=16000,
            on_bad_audio="exclude",
        )
    manifest = read_manifest(tmp_path / "out" / "s")
    bad = manifest[manifest["status"] == "excluded"]
    assert list(bad["clip_id"]) == ["c3"]
    assert "cannot decode" in bad["reason"].iloc[0]
    assert not (tmp_path / "out" / "s" / "c3.wav").exists()


def test_clip_count_mismatch_is_an_error(tmp_path):
    metadata = _dataset(tmp_path)
    with pytest.raises(AudioDecodeError, match="5 clips listed, 6 expected"):
        resample_shard(metadata, tmp_path / "s", shard=0, shard_size=10, sr=16000, expected_clips=6)


def test_unknown_policy_is_rejected(tmp_path):
    metadata = _dataset(tmp_path)
    with pytest.raises(ConfigError, match="skip"):
        resample_shard(
            metadata, tmp_path / "s", shard=0, shard_size=10, sr=16000, on_bad_audio="skip"
        )


def test_a_whole_file_truncation_is_caught_from_its_header(tmp_path):
    # no duration in the metadata (GTZAN, MagnaTagATune): only the header knows the length
    sf.write(tmp_path / "full.wav", tone(seconds=2.0), 22050, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: 44 + 2 * 11025])
    with pytest.raises(
        AudioDecodeError, match=r"cut\.wav: truncated: header says 44100 frames, decoded 11025"
    ):
        load_audio(tmp_path / "cut.wav", sr=22050)
    assert len(load_audio(tmp_path / "full.wav", sr=22050)) == 44100


def test_a_whole_mp3_truncation_is_caught_from_its_xing_header(tmp_path):
    sf.write(tmp_path / "full.mp3", tone(seconds=4.0), 22050, format="MP3")
    data = (tmp_path / "full.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioDecodeError, match=r"cut\.mp3: truncated: header says 88200 frames"):
        load_audio(tmp_path / "cut.mp3", sr=22050)
    assert len(load_audio(tmp_path / "full.mp3", sr=22050)) == 88200


def test_audio_beyond_full_scale_is_scaled_not_clipped_and_recorded(tmp_path):
    from mirprobe.stages import resample

    metadata = _dataset(tmp_path)
    loud = 5.0 * tone(freq=300)
    peak = float(np.abs(loud).max())  # 2.4999
    sf.write(tmp_path / "audio" / "c1.wav", loud, 22050, subtype="FLOAT")
    # the loud file is the prepared one: its digest is what prepare_dataset recorded
    files = sorted(f"audio/{p.name}" for p in (tmp_path / "audio").glob("*.wav"))
    pd.DataFrame(
        {"audio_path": files, "sha256": [file_sha256(tmp_path / f) for f in files]}
    ).to_csv(tmp_path / "checksums.tsv", sep="\t", index=False)
    with pytest.warns(UserWarning, match=rf"c1 .*peak {peak:.4f} beyond full scale; scaled by 1/"):
        record = resample(
            metadata_path=metadata,
            out_dir=tmp_path / "s",
            shard=0,
            shard_size=10,
            sr=22050,
            on_bad_audio="error",
            expected_clips=5,
        )
    manifest = read_manifest(tmp_path / "s").set_index("clip_id")
    assert manifest.loc["c1", "peak"] == pytest.approx(peak, abs=1e-5)
    assert manifest.loc["c0", "peak"] == pytest.approx(0.5, abs=1e-5)
    assert record["n_rescaled"] == 1
    y, _ = sf.read(tmp_path / "s" / "c1.wav", dtype="float32")
    # the waveform is kept (a clipped copy would be flat beyond ±1 / 2.5 of its samples)
    np.testing.assert_allclose(y, loud / peak, atol=1.5 / 32768)


def test_error_mode_names_every_bad_clip_of_the_shard(tmp_path):
    metadata = _dataset(tmp_path, corrupt=True)
    data = (tmp_path / "audio" / "c4.wav").read_bytes()
    (tmp_path / "audio" / "c4.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioDecodeError) as error:
        resample_shard(metadata, tmp_path / "out" / "s", shard=0, shard_size=10, sr=16000)
    message = str(error.value)
    assert "2 bad clip(s) in shard 0" in message
    assert "c3.wav: cannot decode" in message and "c4.wav: truncated" in message
    assert not (tmp_path / "out" / "s").exists()


def test_error_mode_lists_at_most_twenty_bad_clips_and_counts_the_rest(tmp_path):
    rows = []
    (tmp_path / "audio").mkdir()
    for i in range(23):
        (tmp_path / "audio" / f"b{i:02d}.wav").write_bytes(b"garbage" * 100)
        rows.append(
            {
                "clip_id": f"b{i:02d}",
                "audio_path": f"audio/b{i:02d}.wav",
                "offset": 0.0,
                "duration": "",
                "split": "train",
                "label": "x",
                "song_id": f"b{i:02d}",
            }
        )
    write_metadata(pd.DataFrame(rows), tmp_path / "metadata.csv")
    with pytest.raises(AudioDecodeError) as error:
        resample_shard(tmp_path / "metadata.csv", tmp_path / "s", shard=0, shard_size=30, sr=16000)
    message = str(error.value)
    assert "23 bad clip(s)" in message and "... and 3 more" in message
    assert [f"b{i:02d}.wav" in message for i in range(23)] == [True] * 20 + [False] * 3


# -- mono mix and resampling, at the value level ------------------------------------
def test_stereo_is_mixed_as_the_mean_of_its_channels(tmp_path):
    # two different channels, written as float so the mix is exact to float32
    left, right = tone(freq=440.0), 0.3 * tone(freq=97.0) - 0.1
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 22050, subtype="FLOAT")
    y = load_audio(tmp_path / "st.wav", sr=22050)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-7)
    # a three-channel file mixes the same way
    third = -0.2 * tone(freq=1234.0)
    sf.write(tmp_path / "tri.wav", np.stack([left, right, third], 1), 22050, subtype="FLOAT")
    np.testing.assert_allclose(
        load_audio(tmp_path / "tri.wav", sr=22050), (left + right + third) / 3, atol=1e-7
    )


def test_resampling_keeps_a_tone_at_its_frequency_and_level(tmp_path):
    sf.write(tmp_path / "t.wav", tone(seconds=1.0, freq=440.0), 22050, subtype="FLOAT")
    y = load_audio(tmp_path / "t.wav", sr=16000)
    assert len(y) == 16000
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert np.argmax(spectrum) == 440  # 1 Hz bins over one second
    middle = y[2000:-2000]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=1e-2)
