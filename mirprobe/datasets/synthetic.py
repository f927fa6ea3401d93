"""A synthetic key-estimation task rendered from MIDI with FluidSynth.

In the spirit of SynTheory (Wei, Donahue et al., ISMIR 2024): short clips whose
only controlled, labelled property is the musical key, while everything else
(instrument, tempo, harmonic rhythm, texture, voicing, register, dynamics,
noise) varies at random. It needs no download, so it is the workflow's
default dataset.

Labels
    The 24 keys in mir_eval notation, in jukemir's order (:data:`KEY_LABELS`):
    ``C major, Db major, ..., B major, C minor, Db minor, ..., B minor``.

Clips
    Clip ``i`` (global index, ``0 <= i < 24 * clips_per_key``) has the id
    ``synkey-{i:05d}`` and the key ``KEY_LABELS[i % 24]``; every random choice
    for it comes from ``np.random.default_rng([seed, i])`` and nothing else.
    A clip is therefore reproducible on its own, independent of rendering
    order and thread count, and raising ``clips_per_key`` only appends clips.

Music
    Each clip loops one chord progression of diatonic triads and sevenths of
    its key (:data:`PROGRESSIONS`) to fill ``duration`` seconds. Minor keys use
    the harmonic-minor dominant (``V``, ``V7``, ``vii°7``) whose leading tone
    tells a minor key from its relative major, which shares all other pitch
    classes; progressions that open on another degree than the tonic make the
    task not trivially "the first chord". Per clip: a General MIDI program
    from ``params.programs``, a tempo from ``params.tempo_range``, one chord
    per bar, half bar or beat in 4/4 (only rhythms that fit the whole
    progression into the clip, so its cadence is heard; else one per beat), a
    texture (block, repeated or arpeggiated chords), a register, a loudness
    and, sometimes, the chord root doubled an octave below. Per chord: an
    inversion, sometimes an open voicing, velocity and onset jitter.

Rendering
    pretty_midi writes the MIDI file; ``fluidsynth -ni`` renders it with
    ``params.soundfont`` to float WAV; the result is mixed to mono, cut or
    padded to exactly ``duration`` s, mixed with white noise at an SNR drawn
    from ``params.snr_db_range``, peak-normalised to 0.9 and written as mono
    PCM_16 WAV at ``params.sample_rate``. FluidSynth's output is bit-exact
    from run to run, so the dataset's bytes depend only on the params, the
    soundfont and the FluidSynth version (all in the provenance record).

Splits
    Stratified per key: each key's clips are shuffled with
    ``np.random.default_rng([seed, key_index, SPLIT_STREAM])`` and cut into
    train/valid/test by ``params.split_fractions`` (largest-remainder rounding,
    at least one clip per split, hence ``clips_per_key >= 3``).

Layout of ``out_dir``
    ``audio/<clip_id>.wav`` and ``metadata.csv`` (the columns of
    :mod:`mirprobe.datasets.base` plus ``tonic``, ``mode``, ``program``,
    ``program_name``, ``tempo``, ``beats_per_chord``, ``progression``,
    ``texture``, ``octave``, ``inversion_first``, ``bass``, ``velocity``,
    ``snr_db``).
"""

import copy
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd

from ..atomic import atomic_path
from ..errors import ConfigError, DataError
from ..task_types import KEY_LABELS, MODES, TONICS
from .base import SPLITS, Dataset, file_sha256, write_metadata

#: tonic spellings of mir_eval / jukemir (flats), pitch class = list index

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
SOUNDFONT_ENV = "MIRPROBE_SOUNDFONT"
INSTALL_HINT = (
    "install it with `apt-get install fluidsynth fluid-soundfont-gm` "
    f"(or set params.soundfont / ${SOUNDFONT_ENV} to a General MIDI .sf2 file)"
)
#: last entropy word of the split shuffles, so they never reuse a clip's stream
SPLIT_STREAM = 0x5B117
#: General MIDI programs: grand piano, e-piano 1, drawbar organ, nylon guitar,
#: string ensemble 1, choir aahs, brass section, warm pad
DEFAULT_PROGRAMS = [0, 4, 16, 24, 48, 52, 61, 89]

#: chords as pitch classes relative to the tonic, root first
_CHORDS = {
    "major": {
        "I": (0, 4, 7),
        "Imaj7": (0, 4, 7, 11),
        "ii": (2, 5, 9),
        "ii7": (2, 5, 9, 0),
        "iii": (4, 7, 11),
        "IV": (5, 9, 0),
        "IVmaj7": (5, 9, 0, 4),
        "V": (7, 11, 2),
        "V7": (7, 11, 2, 5),
        "vi": (9, 0, 4),
        "vi7": (9, 0, 4, 7),
    },
    # natural minor, except the harmonic-minor dominant chords (leading tone 11)
    "minor": {
        "i": (0, 3, 7),
        "i7": (0, 3, 7, 10),
        "iiø7": (2, 5, 8, 0),
        "III": (3, 7, 10),
        "iv": (5, 8, 0),
        "iv7": (5, 8, 0, 3),
        "V": (7, 11, 2),
        "V7": (7, 11, 2, 5),
        "VI": (8, 0, 3),
        "VImaj7": (8, 0, 3, 7),
        "vii°7": (11, 2, 5, 8),
    },
}
#: progressions per mode, looped to fill a clip; every minor one holds the
#: leading tone, two per mode do not start on the tonic
PROGRESSIONS = {
    "major": [
        ("I", "IV", "V", "I"),
        ("I", "vi", "IV", "V"),
        ("ii7", "V7", "Imaj7", "vi"),
        ("I", "V", "vi", "IV"),
        ("I", "iii", "IV", "V7"),
        ("IV", "I", "ii7", "V7"),
    ],
    "minor": [
        ("i", "iv", "V", "i"),
        ("i", "VI", "iv", "V"),
        ("i", "iiø7", "V7", "i"),
        ("i", "VI", "III", "V"),
        ("i", "iv7", "vii°7", "i"),
        ("VImaj7", "iiø7", "V7", "i7"),
    ],
}
TEXTURES = ("block", "repeated", "arpeggio")
#: beats (quarter notes, 4/4) per chord
HARMONIC_RHYTHMS = (1, 2, 4)

PARAMS_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "clips_per_key": {
            "description": "clips per key; 24 times this in all. At least 3, "
            "so that every key has a train, a valid and a test clip.",
            "type": "integer",
            "minimum": 3,
            "default": 20,
        },
        "duration": {
            "description": "clip length in seconds",
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 600,
            "default": 4.0,
        },
        "sample_rate": {
            "description": "sample rate of the rendered WAV files in Hz",
            "type": "integer",
            "minimum": 8000,
            "maximum": 96000,
            "default": 22050,
        },
        "seed": {
            "description": "seed of every random choice; clip i uses "
            "np.random.default_rng([seed, i])",
            "type": "integer",
            "minimum": 0,
            "default": 0,
        },
        "programs": {
            "description": "General MIDI program numbers (0-127) drawn from "
            "per clip; the default mixes piano, e-piano, organ, guitar, "
            "strings, choir, brass and pad",
            "type": "array",
            "items": {"type": "integer", "minimum": 0, "maximum": 127},
            "minItems": 1,
            "default": DEFAULT_PROGRAMS,
        },
        "tempo_range": {
            "description": "[low, high] tempo in BPM, drawn uniformly per clip",
            "type": "array",
            "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 400},
            "minItems": 2,
            "maxItems": 2,
            "default": [70, 150],
        },
        "octave_range": {
            "description": (
                "[low, high] octave of the lowest chord tone (4 = C4..B4), drawn per clip; "
                "a narrow range keeps absolute pitch height weakly tied to the key, as in "
                "real music, a wide one removes that cue"
            ),
            "type": "array",
            "items": {"type": "integer", "minimum": 1, "maximum": 7},
            "minItems": 2,
            "maxItems": 2,
            "default": [3, 5],
        },
        "snr_db_range": {
            "description": "[low, high] signal-to-white-noise ratio in dB, "
            "drawn uniformly per clip",
            "type": "array",
            "items": {"type": "number"},
            "minItems": 2,
            "maxItems": 2,
            "default": [10, 30],
        },
        "split_fractions": {
            "description": "fractions of each key's clips in train, valid "
            "and test; positive, summing to 1",
            "type": "object",
            "additionalProperties": False,
            "required": list(SPLITS),
            "properties": {
                split: {"type": "number", "exclusiveMinimum": 0, "maximum": 1} for split in SPLITS
            },
            "default": {"train": 0.6, "valid": 0.2, "test": 0.2},
        },
        "soundfont": {
            "description": "path of the General MIDI .sf2 file; null = "
            f"${SOUNDFONT_ENV} if set, else {DEFAULT_SOUNDFONT}",
            "type": ["string", "null"],
            "default": None,
        },
    },
}


def resolve_soundfont(soundfont: str | os.PathLike | None = None) -> str:
    """The soundfont path: ``soundfont`` if given, else $MIRPROBE_SOUNDFONT, else
    the Debian FluidR3 General MIDI font."""
    if soundfont:
        return str(soundfont)
    return os.environ.get(SOUNDFONT_ENV) or DEFAULT_SOUNDFONT


def split_counts(n: int, *, fractions: dict[str, float]) -> dict[str, int]:
    """Clips per split for ``n`` clips of one key: largest-remainder rounding of
    ``n * fractions``, then at least one per split (taken from the largest)."""
    if n < len(SPLITS):
        raise ConfigError(
            f"clips_per_key={n}: need at least {len(SPLITS)} so every split "
            f"{SPLITS} gets a clip of every key"
        )
    exact = np.array([n * fractions[s] for s in SPLITS], dtype=float)
    # the epsilon keeps float products like 0.3 * 10 = 2.9999... from rounding down
    counts = np.floor(exact + 1e-9).astype(int)
    # hand the rounding leftovers to the largest remainders (ties: SPLITS order)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    for i in range(len(SPLITS)):
        if counts[i] == 0:
            counts[int(np.argmax(counts))] -= 1
            counts[i] = 1
    return dict(zip(SPLITS, (int(c) for c in counts), strict=True))


def assign_splits(*, clips_per_key: int, fractions: dict[str, float], seed: int) -> dict[int, str]:
    """``{clip_index: split}`` for all clips, stratified per key (see module doc)."""
    counts = split_counts(clips_per_key, fractions=fractions)
    names = [s for s in SPLITS for _ in range(counts[s])]
    splits = {}
    for key_index in range(len(KEY_LABELS)):
        rng = np.random.default_rng([seed, key_index, SPLIT_STREAM])
        order = rng.permutation(clips_per_key)
        for name, j in zip(names, order, strict=True):
            splits[int(j) * len(KEY_LABELS) + key_index] = name
    return splits


def _voicing(
    pitch_classes: tuple[int, ...], *, tonic: int, low: int, inversion: int, spread: bool
) -> list[int]:
    """MIDI pitches of one chord: the inversion's lowest tone at or above
    ``low``, the others stacked upwards; ``spread`` lifts the second-lowest
    tone an octave (open voicing)."""
    pcs = [(tonic + pc) % 12 for pc in pitch_classes]
    pcs = pcs[inversion:] + pcs[:inversion]
    pitches = [low + (pcs[0] - low) % 12]
    for pc in pcs[1:]:
        pitches.append(pitches[-1] + 1 + (pc - pitches[-1] - 1) % 12)
    if spread:
        pitches[1] += 12
    return sorted(pitches)


def plan_clip(*, clip_index: int, params: dict) -> dict:
    """The musical content of clip ``clip_index``: a dict of the random choices
    (the metadata extras) and ``notes``, a list of (start, end, pitch, velocity)
    tuples in seconds. Pure and deterministic given ``(params, clip_index)``."""
    rng = np.random.default_rng([params["seed"], clip_index])
    key_index = clip_index % len(KEY_LABELS)
    tonic, mode = key_index % 12, MODES[key_index // 12]
    duration = float(params["duration"])

    program = int(rng.choice(params["programs"]))
    lo, hi = params["tempo_range"]
    tempo = float(rng.uniform(lo, hi))
    progression_index = int(rng.integers(len(PROGRESSIONS[mode])))
    progression = PROGRESSIONS[mode][progression_index]
    # harmonic rhythm: a bar, half bar or beat per chord, among those that let
    # the whole progression (and so its tonic and cadence) sound in the clip
    beat = 60.0 / tempo
    fitting = [b for b in HARMONIC_RHYTHMS if len(progression) * b * beat <= duration] or [
        min(HARMONIC_RHYTHMS)
    ]
    beats_per_chord = int(rng.choice(fitting))
    texture = str(rng.choice(TEXTURES))
    octave_lo, octave_hi = params["octave_range"]
    octave = int(rng.integers(octave_lo, octave_hi + 1))  # lowest chord tone's octave
    bass = bool(rng.random() < 0.6)
    velocity = int(rng.integers(60, 111))
    snr_lo, snr_hi = params["snr_db_range"]
    snr_db = float(rng.uniform(snr_lo, snr_hi))
    # the noise gets its own generator, seeded from this clip's stream
    noise_seed = int(rng.integers(2**63))

    chord_len = beats_per_chord * beat
    # play on past the end, so the cut clip ends mid-note rather than in a fading tail
    n_chords = int(np.ceil((duration + 0.25) / chord_len))
    notes = []
    inversions = []
    for c in range(n_chords):
        name = progression[c % len(progression)]
        pcs = _CHORDS[mode][name]
        inversion = int(rng.integers(len(pcs)))
        inversions.append(inversion)
        pitches = _voicing(
            pcs,
            tonic=tonic,
            low=12 * (octave + 1),
            inversion=inversion,
            spread=bool(rng.random() < 0.3),
        )
        start = c * chord_len
        if texture == "block":
            onsets = [(start, chord_len, pitches)]
        elif texture == "repeated":
            onsets = [(start + b * beat, beat, pitches) for b in range(beats_per_chord)]
        else:  # arpeggio on eighth notes, up and down the voicing
            cycle = pitches + pitches[-2:0:-1]
            onsets = [
                (start + e * beat / 2, beat / 2, [cycle[e % len(cycle)]])
                for e in range(2 * beats_per_chord)
            ]
        for onset, length, chord in onsets:
            for pitch in chord:
                # small human timing and dynamics, never before 0
                t0 = max(0.0, onset + float(rng.normal(0, 0.008)))
                t1 = onset + 0.95 * length
                vel = int(np.clip(velocity + rng.integers(-8, 9), 1, 127))
                notes.append((t0, t1, int(pitch), vel))
        if bass:
            root = 12 * octave + (tonic + pcs[0]) % 12  # an octave below the chord
            notes.append((start, start + 0.95 * chord_len, root, min(127, velocity + 5)))

    return {
        "tonic": TONICS[tonic],
        "mode": mode,
        "program": program,
        "tempo": tempo,
        "beats_per_chord": beats_per_chord,
        "progression": "-".join(progression),
        "texture": texture,
        "octave": octave,
        "inversion_first": inversions[0],
        "bass": int(bass),
        "velocity": velocity,
        "snr_db": snr_db,
        "noise_seed": noise_seed,
        "notes": notes,
    }


def fluidsynth_version() -> str:
    """The first line of ``fluidsynth --version``, e.g. 'FluidSynth runtime
    version 2.3.1'; raises DataError if fluidsynth is not installed."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise DataError(f"fluidsynth not found on PATH; {INSTALL_HINT}")
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def render_midi(
    midi_path: str | os.PathLike, wav_path: str | os.PathLike, *, soundfont: str, sr: int
) -> None:
    """Render ``midi_path`` to a float WAV ``wav_path`` with fluidsynth."""
    cmd = [
        "fluidsynth",
        "-ni",  # no MIDI input, no shell
        "-q",
        # load only the samples the MIDI uses: 3x faster on FluidR3, same bytes
        "-o",
        "synth.dynamic-sample-loading=1",
        # float output: no clipping or dithering before our own normalisation
        "-O",
        "float",
        "-T",
        "wav",
        "-g",
        "0.8",
        "-r",
        str(sr),
        "-F",
        str(wav_path),
        str(soundfont),
        str(midi_path),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not Path(wav_path).is_file():
        raise DataError(
            f"{midi_path}: fluidsynth failed (exit {result.returncode}): "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )


def _write_midi(plan: dict, path: Path) -> None:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=plan["tempo"])
    inst = pretty_midi.Instrument(program=plan["program"])
    inst.notes = [
        pretty_midi.Note(velocity=v, pitch=p, start=s, end=e) for s, e, p, v in plan["notes"]
    ]
    pm.instruments.append(inst)
    pm.write(str(path))


def _finish_audio(
    y: np.ndarray, *, n_samples: int, snr_db: float, rng: np.random.Generator, where: str
) -> np.ndarray:
    """Mono, exact length, noise at ``snr_db``, peak 0.9."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 2:
        y = y.mean(axis=1)
    y = y[:n_samples]
    if len(y) < n_samples:
        y = np.pad(y, (0, n_samples - len(y)))
    power = float(np.mean(y**2))
    if power <= 1e-12:
        raise DataError(
            f"{where}: fluidsynth rendered silence; does the soundfont hold "
            "this General MIDI program?"
        )
    noise = rng.standard_normal(n_samples) * np.sqrt(power / 10 ** (snr_db / 10))
    y = y + noise
    return 0.9 * y / np.max(np.abs(y))


class SyntheticKey(Dataset):
    """The synthetic 24-key task; see the module docstring."""

    kind = "synthetic_key"
    task_type = "key"
    params_schema = PARAMS_SCHEMA

    def __init__(
        self,
        *,
        name: str = "synthetic_key",
        params: dict | None = None,
        data_home: str | os.PathLike | None = None,
    ):
        super().__init__(name=name, params=params, data_home=data_home)
        defaults = {
            key: copy.deepcopy(spec["default"]) for key, spec in PARAMS_SCHEMA["properties"].items()
        }
        self.params = {**defaults, **self.params}
        self._validate()

    def _validate(self) -> None:
        validator = jsonschema.Draft7Validator(PARAMS_SCHEMA)
        errors = sorted(validator.iter_errors(self.params), key=lambda e: [str(x) for x in e.path])
        if errors:
            problems = "; ".join(
                f"params.{'.'.join(map(str, e.path))}: {e.message}"
                if e.path
                else f"params: {e.message}"
                for e in errors
            )
            raise ConfigError(f"dataset {self.name!r} ({self.kind}): {problems}")
        p = self.params
        for key in ("tempo_range", "snr_db_range", "octave_range"):
            lo, hi = p[key]
            if lo > hi:
                raise ConfigError(
                    f"dataset {self.name!r}: params.{key}={[lo, hi]} is not [low, high]"
                )
        total = sum(p["split_fractions"].values())
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(
                f"dataset {self.name!r}: params.split_fractions="
                f"{p['split_fractions']} sums to {total:g}, not 1"
            )

    def labels(self) -> list[str]:
        return list(KEY_LABELS)

    def num_clips(self) -> int:
        return len(KEY_LABELS) * self.params["clips_per_key"]

    def soundfont(self) -> str:
        """The soundfont path this dataset renders with (see ``soundfont`` param)."""
        return resolve_soundfont(self.params["soundfont"])

    def soundfont_exists(self) -> bool:
        """Whether the soundfont file is there (lets tests skip without it)."""
        return Path(self.soundfont()).is_file()

    def check_tools(self) -> str:
        """Raise DataError naming whatever is missing of fluidsynth and the
        soundfont; return the fluidsynth version string."""
        soundfont = Path(self.soundfont())
        missing = []
        if shutil.which("fluidsynth") is None:
            missing.append("the fluidsynth program (not on PATH)")
        if not soundfont.is_file():
            missing.append(f"the soundfont {soundfont} (no such file)")
        if missing:
            raise DataError(
                f"dataset {self.name!r} cannot render: missing {' and '.join(missing)}; "
                + INSTALL_HINT
            )
        return fluidsynth_version()

    def prepare(
        self, out_dir: str | os.PathLike, *, threads: int = 1, on_bad_audio: str = "error"
    ) -> dict:
        out_dir = Path(out_dir)
        version = self.check_tools()
        soundfont = self.soundfont()
        p = self.params
        splits = assign_splits(
            clips_per_key=p["clips_per_key"],
            fractions=p["split_fractions"],
            seed=p["seed"],
        )
        (out_dir / "audio").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="mirprobe-synkey-") as tmp:

            def make(clip_index: int) -> dict:
                return self._make_clip(
                    clip_index,
                    out_dir=out_dir,
                    tmp_dir=Path(tmp),
                    soundfont=soundfont,
                    split=splits[clip_index],
                )

            with ThreadPoolExecutor(max_workers=max(1, int(threads))) as pool:
                rows = list(pool.map(make, range(self.num_clips())))

        table = pd.DataFrame(rows)
        metadata = out_dir / "metadata.csv"
        write_metadata(table, metadata)
        import pretty_midi

        return {
            "generator": f"{__name__}.{type(self).__name__}",
            "kind": self.kind,
            "params": {**copy.deepcopy(p), "soundfont": soundfont},
            "fluidsynth_version": version,
            "pretty_midi_version": pretty_midi.__version__,
            "soundfont": {"path": soundfont, "sha256": file_sha256(soundfont)},
            "clips_per_split": {s: int((table["split"] == s).sum()) for s in SPLITS},
            "num_clips": len(table),
            "metadata_sha256": file_sha256(metadata),
        }

    def _make_clip(
        self, clip_index: int, *, out_dir: Path, tmp_dir: Path, soundfont: str, split: str
    ) -> dict:
        import pretty_midi
        import soundfile as sf

        p = self.params
        plan = plan_clip(clip_index=clip_index, params=p)
        clip_id = f"synkey-{clip_index:05d}"
        midi_path = tmp_dir / f"{clip_id}.mid"
        raw_path = tmp_dir / f"{clip_id}.wav"
        _write_midi(plan, midi_path)
        render_midi(midi_path, raw_path, soundfont=soundfont, sr=p["sample_rate"])
        y, sr = sf.read(raw_path, dtype="float64", always_2d=True)
        if sr != p["sample_rate"]:
            raise DataError(f"{raw_path}: fluidsynth wrote {sr} Hz, not {p['sample_rate']}")
        y = _finish_audio(
            y,
            n_samples=int(round(p["duration"] * p["sample_rate"])),
            snr_db=plan["snr_db"],
            rng=np.random.default_rng(plan.pop("noise_seed")),
            where=f"{clip_id} (program {plan['program']})",
        )
        audio_path = Path("audio") / f"{clip_id}.wav"
        with atomic_path(out_dir / audio_path) as tmp:
            sf.write(tmp, y, p["sample_rate"], subtype="PCM_16", format="WAV")
        plan.pop("notes")
        return {
            "clip_id": clip_id,
            "audio_path": audio_path.as_posix(),
            "offset": 0.0,
            "duration": float(p["duration"]),
            "split": split,
            "label": f"{plan['tonic']} {plan['mode']}",
            "song_id": clip_id,
            **plan,
            "program_name": pretty_midi.program_to_instrument_name(plan["program"]),
        }
