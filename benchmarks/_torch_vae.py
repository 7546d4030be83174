"""The PyTorch reference: the same 784-400-20 MLP VAE, written the idiomatic PyTorch way.

Shared by ``train_throughput.py`` and ``quality.py`` (the ``bench`` extra installs torch),
trained by ``_torch_trainer.TorchTrainer``. Linear layers with PyTorch's default
initialisation, binary cross-entropy with logits summed over pixels, the closed-form
Gaussian KL, one reparameterized sample.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class TorchVAE(nn.Module):
    def __init__(self, pixels: int = 784, hidden: int = 400, latent: int = 20):
        super().__init__()
        self.encoder = nn.Linear(pixels, hidden)
        self.head = nn.Linear(hidden, 2 * latent)
        self.decoder_hidden = nn.Linear(latent, hidden)
        self.decoder_out = nn.Linear(hidden, pixels)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.head(F.relu(self.encoder(x))).chunk(2, dim=-1)
        return mean, log_var

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder_out(F.relu(self.decoder_hidden(z)))

    def neg_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Per-example -ELBO in nats: BCE summed over pixels + KL(q(z|x) || N(0, I))."""
        mean, log_var = self.encode(x)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        distortion = F.binary_cross_entropy_with_logits(self.decode_logits(z), x, reduction="none").sum(-1)
        rate = 0.5 * (mean.square() + log_var.exp() - log_var - 1).sum(-1)
        return distortion + rate

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The mean -ELBO of a batch of images (N, 1, H, W)."""
        return self.neg_elbo(batch[0].flatten(1)).mean()


@torch.no_grad()
def test_neg_elbo(model: TorchVAE, images: np.ndarray, batch_size: int = 1000) -> float:
    """Mean single-sample -ELBO over ``images`` (N, H, W, 1), in nats."""
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(images.reshape(images.shape[0], -1)))
    total = sum(float(model.neg_elbo(x[i : i + batch_size]).sum()) for i in range(0, x.shape[0], batch_size))
    return total / x.shape[0]
