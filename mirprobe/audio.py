"""Audio decoding, validation and resampling.

Conventions: audio is a mono ``float32`` numpy array ``y`` at sample rate
``sr``. :func:`load_audio` decodes with soundfile (WAV, FLAC, OGG, MP3),
mixes to mono, cuts ``[offset, offset + duration)`` and resamples with
librosa (soxr). Every failure raises :class:`~mirprobe.errors.AudioDecodeError`
naming the file and the problem: missing, empty, undecodable, truncated
(shorter than the metadata says), or holding non-finite samples. A silent clip
is legal but degenerate: it is returned with a warning.

:func:`resample_shard` converts one shard of a dataset to mono WAV at one
sample rate, applying the run's bad-audio policy: ``error`` stops at the first
bad clip; ``exclude`` records it, with its reason, in the shard's manifest.
"""

import math
import warnings
from pathlib import Path

import numpy as np

from .atomic import atomic_path, replace_dir
from .errors import AudioDecodeError, ConfigError

#: a clip may be this much shorter than its declared duration (codec padding)
TRUNCATION_TOLERANCE_S = 0.05
BAD_AUDIO_POLICIES = ("error", "exclude")


def load_audio(path, *, sr, offset=0.0, duration=None):
    """Decode ``path`` to mono float32 at ``sr``; raise AudioDecodeError on bad input."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioDecodeError(path, "empty file (0 bytes)")
    try:
        info = sf.info(str(path))
        native_sr = info.samplerate
        start = int(round(offset * native_sr))
        frames = -1 if duration is None else int(round(duration * native_sr))
        y, native_sr = sf.read(
            str(path), start=start, frames=frames, dtype="float32", always_2d=True
        )
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioDecodeError(path, f"cannot decode audio ({error})") from None
    if y.shape[0] == 0:
        raise AudioDecodeError(path, "no audio frames")
    y = y.mean(axis=1)
    if duration is not None:
        got = y.shape[0] / native_sr
        if got < duration - TRUNCATION_TOLERANCE_S:
            raise AudioDecodeError(
                path,
                f"truncated: {got:.3f} s decoded from offset {offset:.3f} s, "
                f"{duration:.3f} s expected",
            )
    if not np.all(np.isfinite(y)):
        raise AudioDecodeError(path, "non-finite samples (NaN or inf)")
    if not np.any(y):
        warnings.warn(f"{path}: silent clip (all samples are zero)", stacklevel=2)
    if native_sr != sr:
        import librosa

        y = librosa.resample(y, orig_sr=native_sr, target_sr=sr)
    return np.ascontiguousarray(y, dtype=np.float32)


def shard_slices(n_clips, shard_size):
    """The ``[start, stop)`` clip ranges of each shard, clips in metadata order."""
    n_shards = max(1, math.ceil(n_clips / shard_size))
    return [(k * shard_size, min(n_clips, (k + 1) * shard_size)) for k in range(n_shards)]


def resample_shard(
    metadata_path, out_dir, *, shard, shard_size, sr, on_bad_audio="error", expected_clips=None
):
    """Convert shard ``shard`` of a dataset to mono 16-bit WAV at ``sr`` in ``out_dir``.

    ``out_dir`` receives one ``<clip_id>.wav`` per good clip and a
    ``manifest.tsv`` with every clip of the shard (``status`` ok/excluded and
    the ``reason``). The directory is built under a temporary name and renamed
    when complete. Returns the manifest as a DataFrame.
    """
    import shutil

    import pandas as pd
    import soundfile as sf

    from .datasets.base import read_metadata

    if on_bad_audio not in BAD_AUDIO_POLICIES:
        raise ConfigError(f"on_bad_audio={on_bad_audio!r}; allowed {BAD_AUDIO_POLICIES}")
    metadata_path = Path(metadata_path)
    table = read_metadata(metadata_path)
    if expected_clips is not None and len(table) != expected_clips:
        raise AudioDecodeError(
            metadata_path, f"{len(table)} clips listed, {expected_clips} expected"
        )
    slices = shard_slices(len(table), shard_size)
    if not 0 <= shard < len(slices):
        raise ConfigError(f"shard {shard} out of range: the dataset has {len(slices)} shards")
    start, stop = slices[shard]
    rows = table.iloc[start:stop]

    out_dir = Path(out_dir)
    tmp_dir = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    manifest = []
    for row in rows.itertuples(index=False):
        source = metadata_path.parent / row.audio_path
        duration = (
            None if row.duration in ("", None) or pd.isna(row.duration) else float(row.duration)
        )
        entry = {"clip_id": row.clip_id, "source": str(row.audio_path)}
        try:
            y = load_audio(source, sr=sr, offset=float(row.offset or 0.0), duration=duration)
        except AudioDecodeError as error:
            if on_bad_audio == "error":
                shutil.rmtree(tmp_dir, ignore_errors=True)
                raise
            manifest.append(
                {**entry, "status": "excluded", "reason": error.problem, "n_samples": 0}
            )
            print(f"excluded {error}", flush=True)
            continue
        # clip peaks rather than wrap around when a resampler overshoots
        sf.write(tmp_dir / f"{row.clip_id}.wav", np.clip(y, -1, 1), sr, subtype="PCM_16")
        manifest.append({**entry, "status": "ok", "reason": "", "n_samples": int(y.shape[0])})
    pd.DataFrame(manifest, columns=["clip_id", "source", "status", "reason", "n_samples"]).to_csv(
        tmp_dir / "manifest.tsv", sep="\t", index=False
    )
    replace_dir(tmp_dir, out_dir)
    return pd.read_csv(out_dir / "manifest.tsv", sep="\t", keep_default_na=False)


def read_manifest(shard_dir):
    """Read a resampled shard's manifest (clip_id, source, status, reason, n_samples)."""
    import pandas as pd

    path = Path(shard_dir) / "manifest.tsv"
    if not path.is_file():
        raise AudioDecodeError(path, "shard manifest not found (incomplete resampling?)")
    return pd.read_csv(path, sep="\t", dtype={"clip_id": str}, keep_default_na=False)


def write_wav(path, y, *, sr):
    """Write mono float audio to a 16-bit WAV atomically."""
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(y, -1, 1), sr, subtype="PCM_16")
