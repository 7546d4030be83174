"""The PyTorch training loop every reference shares: Adam on ``model.loss`` of shuffled batches.

Batches are cut from pre-loaded tensors by a fresh random permutation every epoch (the last
partial batch dropped, as ``vaekit.fit`` does); images go in as NCHW, integer masks as int64.
``torch.set_num_threads`` is left at its default.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch import nn


class TorchTrainer:
    """Adam on ``model.loss(batch)`` (a scalar) over batches of ``batch_size``.

    Args:
      make_model: builds the model, after the seed is set (so the seed fixes its initialisation).
      arrays: the training arrays, images ``(N, H, W, C)`` first.
      batch_size: examples per step.
      learning_rate: Adam's step size.
      seed: seeds PyTorch's generator: initialisation, shuffling and the model's own sampling.
    """

    def __init__(self, make_model: Callable[[], nn.Module], arrays: tuple[np.ndarray, ...], *, batch_size: int,
                 learning_rate: float = 1e-3, seed: int = 0):
        torch.manual_seed(seed)
        self.model = make_model()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=learning_rate)
        self.arrays = tuple(
            torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2) if a.ndim == 4 else a.astype(np.int64)))
            for a in arrays
        )
        self.batch_size = batch_size

    @property
    def steps_per_epoch(self) -> int:
        return self.arrays[0].shape[0] // self.batch_size

    def epoch(self) -> float:
        """Trains one epoch; returns its images per second."""
        self.model.train()
        start = time.perf_counter()
        order = torch.randperm(self.arrays[0].shape[0])
        for step in range(self.steps_per_epoch):
            index = order[step * self.batch_size : (step + 1) * self.batch_size]
            loss = self.model.loss(tuple(a[index] for a in self.arrays))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return self.steps_per_epoch * self.batch_size / (time.perf_counter() - start)

    def epochs(self, count: int, on_epoch_end: Callable[[], object] = lambda: None) -> list[float]:
        """Trains ``count`` epochs, calling ``on_epoch_end()`` after each; returns their images per second."""
        speeds = []
        for _ in range(count):
            speeds.append(self.epoch())
            on_epoch_end()
        return speeds
