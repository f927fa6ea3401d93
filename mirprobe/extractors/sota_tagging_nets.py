"""PyTorch modules of Won et al. 2020's FCN, CRNN and MusiCNN taggers.

Re-implemented from minzwon/sota-music-tagging-models ``training/model.py``
and ``training/modules.py`` (commit ffcd1f90), with the same module names,
so that the published ``best_model.pth`` state dicts load strictly. Each
``forward`` returns a dict of named intermediate outputs (see
:mod:`mirprobe.extractors.sota_tagging`) ending with ``tags`` (the sigmoid
tag scores of the model's own head).

The front end replaces ``torchaudio.transforms.MelSpectrogram`` (defaults
of the torchaudio the models were trained with: 16 kHz, n_fft 512, hop 256,
periodic Hann window, centred reflect-padded STFT, power 2, 96 HTK-scale mel
bands 0-8 kHz without area normalisation) and ``AmplitudeToDB()``
(``10 log10(max(power, 1e-10))``, no top_db) in plain torch: torchaudio is
not a dependency. The filterbank and window are the state dict's
``spec.mel_scale.fb`` and ``spec.spectrogram.window`` buffers (loaded, so the
stored ones are used); :func:`htk_mel_filterbank` computes the same matrix.
"""

import math

import torch
from torch import nn

SAMPLE_RATE = 16000
N_FFT = 512
HOP = N_FFT // 2
N_MELS = 96
F_MAX = 8000.0
AMIN = 1e-10


def htk_mel_filterbank(
    *, n_freqs=N_FFT // 2 + 1, f_min=0.0, f_max=F_MAX, n_mels=N_MELS, sample_rate=SAMPLE_RATE
):
    """``(n_freqs, n_mels)`` triangular HTK-mel filters, unnormalised (torchaudio's
    ``melscale_fbanks(..., norm=None, mel_scale="htk")``)."""
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_min = 2595.0 * math.log10(1.0 + f_min / 700.0)
    m_max = 2595.0 * math.log10(1.0 + f_max / 700.0)
    m_pts = torch.linspace(m_min, m_max, n_mels + 2)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.min(down, up), min=0.0)


class _Buffers(nn.Module):
    def __init__(self, **buffers):
        super().__init__()
        for name, value in buffers.items():
            self.register_buffer(name, value)


class MelSpectrogram(nn.Module):
    """torchaudio's ``MelSpectrogram`` as the models used it, then ``AmplitudeToDB``."""

    def __init__(self):
        super().__init__()
        self.spectrogram = _Buffers(window=torch.hann_window(N_FFT))
        self.mel_scale = _Buffers(fb=htk_mel_filterbank())

    def forward(self, audio):
        """``(B, samples)`` -> ``(B, 96, frames)`` decibels."""
        spec = torch.stft(
            audio,
            N_FFT,
            hop_length=HOP,
            win_length=N_FFT,
            window=self.spectrogram.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        power = spec.abs().pow(2.0)
        mel = (power.transpose(1, 2) @ self.mel_scale.fb).transpose(1, 2)
        return 10.0 * torch.log10(torch.clamp(mel, min=AMIN))


class Conv2dBlock(nn.Module):
    """``modules.Conv_2d``: 3x3 conv, BatchNorm, ReLU, max-pool."""

    def __init__(self, in_channels, out_channels, *, pooling):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.mp = nn.MaxPool2d(pooling)

    def forward(self, x):
        return self.mp(self.relu(self.bn(self.conv(x))))


class Conv1dBlock(nn.Module):
    """``modules.Conv_1d`` with pooling 1 (MusiCNN's back end): conv, BatchNorm, ReLU."""

    def __init__(self, in_channels, out_channels, kernel):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, padding=kernel // 2)
        self.bn = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class VerticalConv(nn.Module):
    """``modules.Conv_V``: a tall 2-d filter, then max over frequency."""

    def __init__(self, out_channels, shape):
        super().__init__()
        self.conv = nn.Conv2d(1, out_channels, shape, padding=(0, shape[1] // 2))
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x))).amax(dim=2)


class HorizontalConv(nn.Module):
    """``modules.Conv_H``: mean over frequency, then a long 1-d filter in time."""

    def __init__(self, out_channels, length):
        super().__init__()
        self.conv = nn.Conv1d(1, out_channels, length, padding=length // 2)
        self.bn = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x.mean(dim=2))))


class _Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.spec = MelSpectrogram()
        self.spec_bn = nn.BatchNorm2d(1)

    def front(self, audio):
        return self.spec_bn(self.spec(audio).unsqueeze(1))


class FCN(_Tagger):
    """``model.FCN`` (Choi et al. 2016's fully convolutional tagger), 29 s inputs."""

    def __init__(self, n_class=50):
        super().__init__()
        self.layer1 = Conv2dBlock(1, 64, pooling=(2, 4))
        self.layer2 = Conv2dBlock(64, 128, pooling=(2, 4))
        self.layer3 = Conv2dBlock(128, 128, pooling=(2, 4))
        self.layer4 = Conv2dBlock(128, 128, pooling=(3, 5))
        self.layer5 = Conv2dBlock(128, 64, pooling=(4, 4))
        self.dense = nn.Linear(64, n_class)

    def forward(self, audio):
        x, out = self.front(audio), {}
        for i in range(1, 6):
            x = out[f"layer{i}"] = getattr(self, f"layer{i}")(x)
        out["tags"] = torch.sigmoid(self.dense(x.flatten(1)))
        return out


class CRNN(_Tagger):
    """``model.CRNN`` (Choi et al. 2017): four conv blocks, a 2-layer GRU, 29 s inputs."""

    def __init__(self, n_class=50):
        super().__init__()
        self.layer1 = Conv2dBlock(1, 64, pooling=(2, 2))
        self.layer2 = Conv2dBlock(64, 128, pooling=(3, 3))
        self.layer3 = Conv2dBlock(128, 128, pooling=(4, 4))
        self.layer4 = Conv2dBlock(128, 128, pooling=(4, 4))
        self.layer5 = nn.GRU(128, 32, 2, batch_first=True)
        self.dense = nn.Linear(32, n_class)

    def forward(self, audio):
        x, out = self.front(audio), {}
        for i in range(1, 5):
            x = out[f"layer{i}"] = getattr(self, f"layer{i}")(x)
        sequence, _ = self.layer5(x.squeeze(2).permute(0, 2, 1))
        out["gru"] = sequence[:, -1, :]
        out["tags"] = torch.sigmoid(self.dense(out["gru"]))
        return out


class Musicnn(_Tagger):
    """``model.Musicnn`` (Pons et al.'s musically motivated front end), 3 s inputs;
    back end 512 / dense 500 for ``dataset="msd"``, else 64 / 200."""

    def __init__(self, n_class=50, dataset="mtat"):
        super().__init__()
        self.layers = nn.ModuleList(
            [
                VerticalConv(204, (int(0.7 * 96), 7)),
                VerticalConv(204, (int(0.4 * 96), 7)),
                HorizontalConv(51, 129),
                HorizontalConv(51, 65),
                HorizontalConv(51, 33),
            ]
        )
        backend = 512 if dataset == "msd" else 64
        dense = 500 if dataset == "msd" else 200
        self.layer1 = Conv1dBlock(561, backend, 7)
        self.layer2 = Conv1dBlock(backend, backend, 7)
        self.layer3 = Conv1dBlock(backend, backend, 7)
        self.dense1 = nn.Linear((561 + backend * 3) * 2, dense)
        self.bn = nn.BatchNorm1d(dense)
        self.relu = nn.ReLU()
        self.dense2 = nn.Linear(dense, n_class)

    def forward(self, audio):
        x, out = self.front(audio), {}
        front = out["frontend"] = torch.cat([layer(x) for layer in self.layers], dim=1)
        res1 = out["layer1"] = self.layer1(front)
        res2 = out["layer2"] = self.layer2(res1) + res1
        res3 = out["layer3"] = self.layer3(res2) + res2
        stacked = torch.cat([front, res1, res2, res3], dim=1)
        out["pooled"] = torch.cat([stacked.amax(dim=2), stacked.mean(dim=2)], dim=1)
        out["dense1"] = self.relu(self.bn(self.dense1(out["pooled"])))
        out["tags"] = torch.sigmoid(self.dense2(out["dense1"]))
        return out


ARCHITECTURES = {"fcn": FCN, "crnn": CRNN, "musicnn": Musicnn}


def build_network(model, dataset):
    """An untrained network of ``model`` (fcn | crnn | musicnn) for ``dataset``'s head."""
    if model == "musicnn":
        return Musicnn(dataset=dataset)
    return ARCHITECTURES[model]()
