"""Audio decoding, validation and resampling.

Conventions: audio is a mono ``float32`` numpy array ``y`` at sample rate
``sr``. :func:`load_audio` decodes with soundfile (WAV, FLAC, OGG, MP3; not
m4a/AAC, whose error says how to convert),
mixes to mono, cuts ``[offset, offset + duration)`` and resamples with
librosa (soxr). Every failure raises :class:`~mirprobe.errors.AudioDecodeError`
naming the file and the problem: missing, empty, undecodable, truncated
(shorter than the metadata says, or, for a whole file, fewer frames decoded
than its header declares), cut past its end (the offset and the file's length
are named), or holding non-finite samples. A silent clip is
legal but degenerate: it is returned with a warning.

:func:`resample_shard` converts one shard of a dataset to mono WAV at one
sample rate, applying the run's bad-audio policy: ``error`` decodes the whole
shard and then stops with one error naming every bad clip (the first
:data:`MAX_LISTED` and a count of the rest); ``exclude`` records each, with
its reason, in the shard's manifest.

Levels beyond full scale: a float source (or a resampler's overshoot) may
exceed ±1, which 16-bit PCM cannot hold. Rather than clip it (distorting the
waveform), such a clip is scaled by ``1 / peak``, with a warning; the
manifest's ``peak`` column holds every clip's peak before scaling and the
stage record counts the clips scaled. jukemir loads with librosa and never
clips; the peak-normalising extractors (chroma, MFCC, Jukebox) see the same
signal either way.
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
#: what soundfile (libsndfile) decodes; m4a/AAC, WMA and video containers it cannot
READABLE_FORMATS = "WAV, FLAC, Ogg (Vorbis, Opus), MP3, AIFF, AU"
#: suffixes of formats libsndfile cannot decode, so the message can say how to convert
UNREADABLE_SUFFIXES = (".m4a", ".mp4", ".aac", ".alac", ".wma", ".webm", ".mkv", ".ape")
#: bad clips named in one error (the rest are counted)
MAX_LISTED = 20
#: columns of a resampled shard's manifest
MANIFEST_COLUMNS = ["clip_id", "source", "status", "reason", "n_samples", "peak"]


def wav_header_frames(path):
    """Frames a RIFF/WAVE file's ``data`` chunk header declares, or None.

    libsndfile silently shortens a truncated WAV to what is present, so the
    header is read here. None when the file is not a plain RIFF WAVE or the
    size is a streaming placeholder (0 or 0xFFFFFFFF).
    """
    import struct

    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return None
            name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"fmt ":
                body = handle.read(size + (size & 1))
                if len(body) < 14:
                    return None
                block_align = struct.unpack("<H", body[12:14])[0]
            elif name == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                handle.seek(size + (size & 1), 1)


def format_hint(path):
    """What to do about a file soundfile cannot decode: the formats that work, how to convert."""
    suffix = Path(path).suffix.lower()
    what = f"{suffix[1:]} files" if suffix in UNREADABLE_SUFFIXES else "this format"
    return (
        f"soundfile cannot read {what}; it reads {READABLE_FORMATS}. Convert it, e.g. "
        f"`ffmpeg -i {Path(path).name} {Path(path).with_suffix('.flac').name}` (FLAC is "
        "lossless; for m4a/AAC this decodes the original once, adding no further loss)"
    )


def decode_problem(path, error):
    """The AudioDecodeError problem text for soundfile's ``error`` on ``path``."""
    text = f"cannot decode audio ({error})"
    if Path(path).suffix.lower() in UNREADABLE_SUFFIXES or "not recognised" in str(error):
        text += f"; {format_hint(path)}"
    return text


def clip_problem(*, frames, samplerate, offset, duration):
    """Why the clip ``[offset, offset + duration)`` cannot be cut from a file of ``frames``
    frames at ``samplerate``, or None; ``duration`` None = to the end of the file."""
    length = frames / samplerate
    if offset > 0 and offset >= length:
        return f"offset {offset:.3f} s is past the end of the file ({length:.3f} s long)"
    if duration is not None and offset + duration > length + TRUNCATION_TOLERANCE_S:
        return (
            f"too short: the clip ends at {offset + duration:.3f} s (offset {offset:.3f} s "
            f"+ duration {duration:.3f} s), the file is {length:.3f} s long"
        )
    return None


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
        declared = wav_header_frames(path) if info.format in ("WAV", "WAVEX") else None
        declared = info.frames if declared is None else declared
        native_sr = info.samplerate
        # the header's length: an offset past it would decode nothing, said plainly
        problem = clip_problem(frames=declared, samplerate=native_sr, offset=offset, duration=None)
        start = int(round(offset * native_sr))
        frames = -1 if duration is None else int(round(duration * native_sr))
        y, native_sr = sf.read(
            str(path), start=start, frames=frames, dtype="float32", always_2d=True
        )
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioDecodeError(path, decode_problem(path, error)) from None
    if problem is not None:
        raise AudioDecodeError(path, problem)
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
    else:  # a whole file: its header is the only record of its length
        decoded = start + y.shape[0]
        if decoded < declared - TRUNCATION_TOLERANCE_S * native_sr:
            raise AudioDecodeError(
                path, f"truncated: header says {declared} frames, decoded {decoded}"
            )
    if not np.all(np.isfinite(y)):
        raise AudioDecodeError(path, "non-finite samples (NaN or inf)")
    if not np.any(y):
        warnings.warn(f"{path}: silent clip (all samples are zero)", stacklevel=2)
    if native_sr != sr:
        import librosa

        y = librosa.resample(y, orig_sr=native_sr, target_sr=sr)
    return np.ascontiguousarray(y, dtype=np.float32)


def fit_full_scale(y, *, name):
    """``(y, peak)``: ``y`` scaled by ``1 / peak`` when its peak exceeds full scale (±1), with
    a warning, so that 16-bit PCM holds it unclipped; ``peak`` is the level before scaling."""
    peak = float(np.abs(y).max()) if y.size else 0.0
    if peak > 1.0:
        warnings.warn(
            f"{name}: peak {peak:.4f} beyond full scale; scaled by 1/{peak:.4f} (not clipped)",
            stacklevel=2,
        )
        y = y / peak
    return y, peak


def bad_clips_message(errors, *, what):
    """One message naming every bad clip (the first MAX_LISTED, then a count)."""
    lines = [str(error) for error in errors[:MAX_LISTED]]
    if len(errors) > MAX_LISTED:
        lines.append(f"... and {len(errors) - MAX_LISTED} more")
    return f"{len(errors)} bad clip(s) in {what}:\n  " + "\n  ".join(lines)


def shard_slices(n_clips, shard_size):
    """The ``[start, stop)`` clip ranges of each shard, clips in metadata order."""
    n_shards = max(1, math.ceil(n_clips / shard_size))
    return [(k * shard_size, min(n_clips, (k + 1) * shard_size)) for k in range(n_shards)]


def resample_shard(
    metadata_path, out_dir, *, shard, shard_size, sr, on_bad_audio="error", expected_clips=None
):
    """Convert shard ``shard`` of a dataset to mono 16-bit WAV at ``sr`` in ``out_dir``.

    ``out_dir`` receives one ``<clip_id>.wav`` per good clip and a
    ``manifest.tsv`` with every clip of the shard (``status`` ok/excluded, the
    ``reason``, ``n_samples`` and the ``peak`` before any scaling). The directory is built under a temporary name and renamed
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
    manifest, bad = [], []
    for row in rows.itertuples(index=False):
        source = metadata_path.parent / row.audio_path
        duration = (
            None if row.duration in ("", None) or pd.isna(row.duration) else float(row.duration)
        )
        entry = {"clip_id": row.clip_id, "source": str(row.audio_path)}
        try:
            y = load_audio(source, sr=sr, offset=float(row.offset or 0.0), duration=duration)
        except AudioDecodeError as error:
            bad.append(error)
            manifest.append(
                {**entry, "status": "excluded", "reason": error.problem, "n_samples": 0, "peak": ""}
            )
            if on_bad_audio == "exclude":
                print(f"excluded {error}", flush=True)
            continue
        y, peak = fit_full_scale(y, name=f"{row.clip_id} ({source})")
        sf.write(tmp_dir / f"{row.clip_id}.wav", y, sr, subtype="PCM_16")
        manifest.append(
            {**entry, "status": "ok", "reason": "", "n_samples": int(y.shape[0]), "peak": peak}
        )
    if bad and on_bad_audio == "error":
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise AudioDecodeError(metadata_path, bad_clips_message(bad, what=f"shard {shard}"))
    pd.DataFrame(manifest, columns=MANIFEST_COLUMNS).to_csv(
        tmp_dir / "manifest.tsv", sep="\t", index=False, float_format="%.6g"
    )
    replace_dir(tmp_dir, out_dir)
    return pd.read_csv(out_dir / "manifest.tsv", sep="\t", keep_default_na=False)


def verify_shard_sources(metadata_path, checksums_path, *, shard, shard_size):
    """Check the source files of one shard against the sha256 digests ``prepare_dataset``
    recorded in ``checksums_path``; return ``{audio_path: sha256}``.

    A file missing, changed or not listed since the dataset was prepared is a
    DataError naming it: the metadata and checksums no longer describe it.
    """
    import pandas as pd

    from .datasets.base import file_sha256, read_metadata
    from .errors import DataError

    metadata_path, checksums_path = Path(metadata_path), Path(checksums_path)
    if not checksums_path.is_file():
        raise DataError(f"{checksums_path}: dataset checksums not found (rerun prepare_dataset)")
    table = read_metadata(metadata_path)
    start, stop = shard_slices(len(table), shard_size)[shard]
    recorded = pd.read_csv(checksums_path, sep="\t", dtype=str, keep_default_na=False)
    recorded = dict(zip(recorded["audio_path"], recorded["sha256"], strict=True))
    redo = (
        f"prepare the dataset again (delete {checksums_path.parent}, or "
        f"`snakemake --forcerun prepare_dataset`) so that its records describe the files used"
    )
    digests = {}
    for audio_path in dict.fromkeys(table["audio_path"].iloc[start:stop]):
        path = metadata_path.parent / audio_path
        if audio_path not in recorded:
            raise DataError(f"{path}: not listed in {checksums_path}; {redo}")
        if not path.is_file():
            raise DataError(f"{path}: missing since the dataset was prepared; {redo}")
        digest = file_sha256(path)
        if digest != recorded[audio_path]:
            raise DataError(
                f"{path}: changed since the dataset was prepared (sha256 {digest}, "
                f"{checksums_path} records {recorded[audio_path]}); {redo}"
            )
        digests[str(audio_path)] = digest
    return digests


def read_manifest(shard_dir):
    """Read a resampled shard's manifest (:data:`MANIFEST_COLUMNS`)."""
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
