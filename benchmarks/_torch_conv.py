"""The PyTorch references for ``conv_throughput.py``: the conv VAE and the U-Net, written the idiomatic PyTorch way.

Same architectures as ``vaekit.models.VAE`` (conv) and ``vaekit.segmentation.UNet`` (NCHW here,
NHWC there; PyTorch's default initialisation), same losses; ``_torch_trainer.TorchTrainer``
trains them.

Padding: vaekit's SAME padding of a kernel-4 stride-2 convolution is one pixel on each side,
PyTorch's ``padding=1``; a SAME kernel-4 stride-2 transposed convolution doubles the size like
``ConvTranspose2d(..., 4, 2, padding=1)``; a SAME 3×3 convolution is ``padding=1``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def upsample(kind: str, cin: int, cout: int) -> nn.Module:
    """The ×2 upsamplings of ``vaekit.nn.make_upsample``."""
    if kind == "transposed":
        return nn.ConvTranspose2d(cin, cout, 4, 2, padding=1)
    if kind == "repeat":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1))
    if kind == "pixel_shuffle":
        return nn.Sequential(nn.Conv2d(cin, 4 * cout, 3, padding=1), nn.PixelShuffle(2))
    raise ValueError(kind)


class TorchConvVAE(nn.Module):
    """Conv 1→32 k4 s2, Conv 32→64 k4 s2, dense to 2·latent; dense back, two ×2 upsamplings; Bernoulli."""

    def __init__(self, channels=(32, 64), latent: int = 16, upsampling: str = "transposed", size: int = 28):
        super().__init__()
        sizes = (1, *channels)
        self.convs = nn.ModuleList([nn.Conv2d(a, b, 4, 2, padding=1) for a, b in zip(sizes[:-1], sizes[1:])])
        self.start = (channels[-1], size // 2 ** len(channels), size // 2 ** len(channels))
        flat = int(np.prod(self.start))
        self.head = nn.Linear(flat, 2 * latent)
        self.dense = nn.Linear(latent, flat)
        back = (*reversed(channels), 1)
        self.ups = nn.ModuleList([upsample(upsampling, a, b) for a, b in zip(back[:-1], back[1:])])

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = batch[0]
        h = x
        for conv in self.convs:
            h = F.relu(conv(h))
        mean, log_var = self.head(h.flatten(1)).chunk(2, dim=-1)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        h = F.relu(self.dense(z)).view(-1, *self.start)
        for up in self.ups[:-1]:
            h = F.relu(up(h))
        logits = self.ups[-1](h)
        distortion = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(-1)
        rate = 0.5 * (mean.square() + log_var.exp() - log_var - 1).sum(-1)
        return (distortion + rate).mean()


class TorchUNet(nn.Module):
    """``vaekit.segmentation.UNet``: stem of two 3×3 convs, k4 s2 downsamplings, upsampling + skip + 3×3 mix, 1×1 head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 11, channels=(16, 32, 64), upsampling: str = "transposed"):
        super().__init__()
        c = channels
        self.stem = nn.ModuleList([nn.Conv2d(in_channels, c[0], 3, padding=1), nn.Conv2d(c[0], c[0], 3, padding=1)])
        self.down = nn.ModuleList([nn.Conv2d(a, b, 4, 2, padding=1) for a, b in zip(c[:-1], c[1:])])
        self.down_mix = nn.ModuleList([nn.Conv2d(k, k, 3, padding=1) for k in c[1:]])
        self.up = nn.ModuleList([upsample(upsampling, b, a) for a, b in zip(c[-2::-1], c[:0:-1])])
        self.up_mix = nn.ModuleList([nn.Conv2d(2 * k, k, 3, padding=1) for k in c[-2::-1]])
        self.head = nn.Conv2d(c[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.stem:
            h = F.relu(conv(h))
        skips = [h]
        for down, mix in zip(self.down, self.down_mix):
            h = F.relu(mix(F.relu(down(h))))
            skips.append(h)
        for up, mix, skip in zip(self.up, self.up_mix, skips[-2::-1]):
            h = F.relu(up(h))
            h = F.relu(mix(torch.cat([h, skip], dim=1)))
        return self.head(h)

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        images, masks = batch
        return F.cross_entropy(self(images), masks)
