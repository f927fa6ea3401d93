"""load_audio's errors for a clip cut past the end and for formats soundfile cannot read."""

import numpy as np
import pytest
import soundfile as sf

from mirprobe.audio import load_audio
from mirprobe.errors import AudioDecodeError


def test_an_offset_past_the_end_names_both_lengths(tmp_path):
    path = tmp_path / "short.flac"
    sf.write(path, np.full(8000, 0.1, np.float32), 8000, subtype="PCM_16")
    with pytest.raises(
        AudioDecodeError,
        match=r"short\.flac: offset 2\.500 s is past the end of the file \(1\.000 s long\)",
    ):
        load_audio(path, sr=8000, offset=2.5, duration=1.0)
    with pytest.raises(AudioDecodeError, match=r"offset 1\.000 s is past the end"):
        load_audio(path, sr=8000, offset=1.0)


def test_m4a_says_which_formats_work_and_how_to_convert(tmp_path):
    path = tmp_path / "take.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom" + bytes(64))
    with pytest.raises(AudioDecodeError) as error:
        load_audio(path, sr=8000)
    message = str(error.value)
    assert message.startswith(f"{path}: cannot decode audio (")
    assert "soundfile cannot read m4a files; it reads WAV, FLAC, Ogg (Vorbis, Opus), MP3" in message
    assert "`ffmpeg -i take.m4a take.flac`" in message


def test_an_unknown_format_gets_the_same_advice(tmp_path):
    path = tmp_path / "take.xyz"
    path.write_bytes(b"not audio at all" * 8)
    with pytest.raises(AudioDecodeError, match=r"soundfile cannot read this format; it reads WAV"):
        load_audio(path, sr=8000)
