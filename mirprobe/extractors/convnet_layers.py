"""Layers of the convnet taggers whose params ``model`` picks the network
(:mod:`~mirprobe.extractors.choi2016`, :mod:`~mirprobe.extractors.sota_tagging`).

* :class:`LayersByModel`: ``available_layers`` / ``default_layers_for`` read
  from the class's ``model_layers`` and ``model_default_layer`` tables, keyed
  by params ``model`` (the schema's default where params leave it out).
* :func:`pool_map`: a block's output pooled over its positions (frequency and
  time), its channel-wise mean and max concatenated, ``[mean, max]``; a map
  of one position, or a vector, is taken as is.
* :func:`pooled_layers`: a network run over windows, a few at a time, each
  asked layer pooled by :func:`pool_map`.

Nothing here imports torch at import time: the Snakefile reads the layers
while parsing.
"""

import numpy as np


class LayersByModel:
    """Mixin of an :class:`~mirprobe.extractors.base.Extractor` whose layers depend
    on params ``model``: ``model_layers`` ``{model: layer names}``,
    ``model_default_layer`` ``{model: the layer probed by default}``."""

    model_layers = {}
    model_default_layer = {}

    @classmethod
    def model_of(cls, params):
        return params.get("model", cls.params_schema["properties"]["model"]["default"])

    @classmethod
    def available_layers(cls, params):
        return cls.model_layers[cls.model_of(params)]

    @classmethod
    def default_layers_for(cls, params):
        return (cls.model_default_layer[cls.model_of(params)],)


def pool_map(x):
    """``(B, C, ...)`` -> ``(B, 2C)`` [mean, max] over the positions, or ``(B, C)`` when
    there is one position (or the output is already a vector)."""
    import torch

    if x.ndim == 2:
        return x
    flat = x.flatten(2)
    if flat.shape[2] == 1:
        return flat[:, :, 0]
    return torch.cat([flat.mean(dim=2), flat.amax(dim=2)], dim=1)


def pooled_layers(model, windows, *, layers, step, device, **forward):
    """``{layer: (len(windows), dim) float32}``: ``model(x, **forward)`` (a dict of
    layer outputs) on ``step`` windows at a time, each of ``layers`` pooled by
    :func:`pool_map`."""
    import torch

    parts = {layer: [] for layer in layers}
    with torch.inference_mode():
        for start in range(0, len(windows), step):
            x = torch.from_numpy(windows[start : start + step]).to(device)
            outputs = model(x, **forward)
            for layer in layers:
                parts[layer].append(pool_map(outputs[layer]).float().cpu().numpy())
    return {layer: np.concatenate(parts[layer]) for layer in layers}
