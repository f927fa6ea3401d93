"""Windowing and step-weighted pooling of clips, shared by the transformers extractors.

A clip of ``n`` samples is cut into consecutive non-overlapping windows of
``window`` samples (:func:`window_spans`); a last window shorter than
``min_tail`` samples is dropped unless it is the whole clip. Each window is
embedded on its own (never more than one window in a model's context) and
pooled over its own output steps. A clip's embedding is the mean of its
windows' pooled states weighted by their step counts, i.e. the mean over every
step of every window.

:func:`embed_windowed` batches the windows of equal length of a batch of clips
(at most as many as there are clips per model call, so a call never holds more
windows than the batch size asked for) and accumulates in float64.
"""

import numpy as np

from ..errors import DataError
from .base import mono_float32


def window_spans(n_samples, *, window, min_tail):
    """``[(start, stop)]`` windows of a clip of ``n_samples`` (see the module docstring)."""
    if n_samples <= 0:
        raise DataError("cannot embed an empty clip (0 samples)")
    spans = [(start, min(start + window, n_samples)) for start in range(0, n_samples, window)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < min_tail:
        spans.pop()
    return spans


def embed_windowed(batch, *, layers, window, min_tail, embed_windows):
    """Clips -> ``{layer: (len(batch), dim) float32}``, the step-weighted mean over windows.

    ``embed_windows(windows)`` takes a list of equal-length float32 windows and
    returns ``({layer: (len(windows), dim) array}, n_steps)``: each window's
    state pooled over its ``n_steps`` output steps. Run it under
    ``torch.inference_mode()`` where it uses torch.
    """
    by_length = {}
    for index, y in enumerate(batch):
        y = mono_float32(y, allow_empty=True)
        for start, stop in window_spans(len(y), window=window, min_tail=min_tail):
            by_length.setdefault(stop - start, []).append((index, y[start:stop]))
    sums = {layer: None for layer in layers}
    steps = np.zeros(len(batch))
    max_windows = max(1, len(batch))
    for length in sorted(by_length):
        group = by_length[length]
        for chunk_start in range(0, len(group), max_windows):
            chunk = group[chunk_start : chunk_start + max_windows]
            pooled, n_steps = embed_windows([w for _, w in chunk])
            for row, (index, _) in enumerate(chunk):
                steps[index] += n_steps
                for layer in layers:
                    if sums[layer] is None:
                        dim = pooled[layer].shape[1]
                        sums[layer] = np.zeros((len(batch), dim), dtype=np.float64)
                    sums[layer][index] += pooled[layer][row] * n_steps
    return {layer: (sums[layer] / steps[:, None]).astype(np.float32) for layer in layers}
