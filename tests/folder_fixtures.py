"""A folder of real music in several formats, built from the shared fixture audio.

Each of the three fixture excerpts (22050 Hz mono Ogg Vorbis) gives four 3 s
files, one per format, each holding two 1.5 s clips:

- ``wav``: float32 WAV, 44.1 kHz stereo
- ``ogg``: Ogg Vorbis, 22.05 kHz mono
- ``mp3``: MP3, 16 kHz mono
- ``flac``: 16-bit FLAC, 22.05 kHz mono
"""

import numpy as np
import soundfile as sf

from conftest import fixture_path

PIECES = {
    "dance": "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).ogg",
    "vibe": "Kevin_MacLeod_-_Vibe_Ace.ogg",
    "trumpet": "sorohanro_-_solo-trumpet-06.ogg",
}
#: format -> (suffix, sample rate, channels, soundfile subtype)
FORMATS = {
    "wav": (".wav", 44100, 2, "FLOAT"),
    "ogg": (".ogg", 22050, 1, "VORBIS"),
    "mp3": (".mp3", 16000, 1, "MPEG_LAYER_III"),
    "flac": (".flac", 22050, 1, "PCM_16"),
}
FILE_S, CLIP_S = 3.0, 1.5
KEYS = {"dance": "F# minor", "vibe": "C major", "trumpet": "Bb major"}
TAGS = {"dance": "strings;orchestra", "vibe": "synth;drums", "trumpet": "trumpet;solo"}


def build_audio_folder(root):
    """Write the 12 files under ``root``; return one dict per clip (24) describing it."""
    import librosa

    clips = []
    for p, (piece, name) in enumerate(PIECES.items()):
        y, sr = sf.read(fixture_path("audio", name), dtype="float32")
        for k, (fmt, (suffix, out_sr, channels, subtype)) in enumerate(FORMATS.items()):
            start = int(k * FILE_S * sr) % max(1, len(y) - int(FILE_S * sr))
            part = y[start : start + int(FILE_S * sr)]
            if out_sr != sr:
                part = librosa.resample(part, orig_sr=sr, target_sr=out_sr)
            data = np.stack([part, 0.5 * part], axis=1) if channels == 2 else part
            rel = f"{piece}/take{k}{suffix}"
            (root / piece).mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, data, out_sr, subtype=subtype)
            for c in range(2):
                clip = part[int(c * CLIP_S * out_sr) : int((c + 1) * CLIP_S * out_sr)]
                clips.append(
                    {
                        "path": rel,
                        "offset": c * CLIP_S,
                        "duration": CLIP_S,
                        "piece": piece,
                        "format": fmt,
                        "take": k,
                        "session": f"{piece}-s{k // 2}",
                        "rms": float(np.sqrt(np.mean(clip**2))),
                        "index": p * 8 + k * 2 + c,
                    }
                )
    return clips


def write_labels(path, clips, columns, *, sep=","):
    """Write a labels table with ``columns`` (name -> function of a clip dict)."""
    lines = [sep.join(columns)]
    for clip in clips:
        lines.append(sep.join(str(fn(clip)) for fn in columns.values()))
    path.write_text("\n".join(lines) + "\n")
    return path


def split_by_take(clip):
    """A fixed split: takes 0, 1 train, 2 valid, 3 test (so every format is in train)."""
    return ("train", "train", "valid", "test")[clip["take"]]
