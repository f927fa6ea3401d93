"""Handcrafted baselines: chroma and MFCC, following jukemir's recipe exactly.

Recipe (p-lambda/jukemir ``representations/handcrafted/main.py``): audio at
22,050 Hz, peak-normalised; ``librosa.feature.chroma_cqt`` (12 bins) or
``librosa.feature.mfcc`` (20 coefficients) with hop 512; then the mean and
standard deviation over time of the features and of their first and second
differences (``np.diff`` along time, n = 0, 1, 2), concatenated as
``[mean0, std0, mean1, std1, mean2, std2]``: 72-d chroma, 120-d MFCC. The
whole clip is summarised at once (no windowing). There is one layer,
``stats``. MFCC is computed in float64 (jukemir: float32) so that its features
are the same on every CPU; they are stored as float32.
"""

import numpy as np

from .base import Extractor

HOP_LENGTH = 512


def moment_statistics(features):
    """Mean and std of ``features`` (dim, time) and of its 1st and 2nd time differences."""
    moments = []
    for order in range(3):
        diff = np.diff(features, n=order, axis=1)
        moments.append(diff.mean(axis=1))
        moments.append(diff.std(axis=1))
    return np.concatenate(moments).astype(np.float32)


def peak_normalise(y):
    peak = np.abs(y).max()
    return y / peak if peak > 0 else y


class _Handcrafted(Extractor):
    sample_rate = 22050
    conda_env = "handcrafted.yaml"
    packages = ("librosa",)
    wants_gpu = False
    # three centred frames: the second time difference of fewer is empty (NaN statistics)
    min_input_samples = 2 * HOP_LENGTH
    default_layers = ("stats",)

    def frames(self, y):
        raise NotImplementedError

    def embed(self, batch, *, layers=("stats",)):
        self.check_layers(layers)
        pooled = [moment_statistics(self.frames(peak_normalise(y))) for y in batch]
        return {"stats": np.stack(pooled)}


class Chroma(_Handcrafted):
    """72-d chroma statistics (``chroma_cqt``, 12 bins)."""

    name = "chroma"

    def frames(self, y):
        import librosa

        return librosa.feature.chroma_cqt(y=y, sr=self.sample_rate, hop_length=HOP_LENGTH)


class MFCC(_Handcrafted):
    """120-d MFCC statistics (20 coefficients)."""

    name = "mfcc"

    def frames(self, y):
        import librosa

        # float64, so that the 120-d statistics, rounded to float32, are the same on every
        # CPU: in float32, the mel projection (an OpenBLAS GEMM whose kernel depends on the
        # CPU) and power_to_db's log10 (numpy's AVX-512 or AVX2 loop) round differently
        # by CPU, enough to change the default table's MFCC row (see README).
        return librosa.feature.mfcc(
            y=np.asarray(y, dtype=np.float64), sr=self.sample_rate, hop_length=HOP_LENGTH
        )
