"""Training throughput of the MLP VAE: vaekit against PyTorch, interleaved in one process.

The model is the 784-400-20 MLP VAE (ReLU, Bernoulli likelihood, Adam 1e-3, batch 128) on
Fashion-MNIST (60,000 training images). vaekit trains through ``vaekit.train.fit`` (the
whole-epoch ``lax.scan`` loop) and reports its own epoch timings; the PyTorch
implementation is in ``_torch_vae.py``. The two alternate, round after round, so that both
see the same machine load; the best epoch of each is compared (the least disturbed one),
and the median is printed beside it.

An epoch during which other processes took more than 5% of the CPU is marked ``*`` and
left out of the summary (``_timing.py``).

The script also measures this machine's float32 matmul peak (the best GFLOP/s of large
jitted ``jnp.matmul`` calls) and reports the fraction of it that vaekit's training reaches.

Run (from the repository root, with the ``bench`` extra installed)::

    python benchmarks/train_throughput.py [--rounds 4] [--epochs-per-round 2]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _timing import FitRounds, race  # noqa: E402
from _torch_trainer import TorchTrainer  # noqa: E402
from _torch_vae import TorchVAE  # noqa: E402

import vaekit as vk  # noqa: E402

BATCH = 128
LAYERS = ((784, 400), (400, 40), (20, 400), (400, 784))  # encoder, mean/log-variance head, decoder


def training_flops_per_image(layers=LAYERS) -> int:
    """Matmul FLOPs of one training step, per image.

    A dense layer of shape ``(a, b)`` costs ``2ab`` FLOPs forward (one multiply-add per
    weight); backward it costs ``2ab`` for the gradient of its weights and ``2ab`` for the
    gradient of its input, except the first layer, whose input (the image) needs no
    gradient. Biases, activations, the loss and Adam are not counted (they are O(a + b) or
    O(parameters) per step, not per image). For 784-400-20::

        forward   2 (784*400 + 400*40 + 20*400 + 400*784)           = 1,302,400
        backward  2*784*400 + 4 (400*40 + 20*400 + 400*784)         = 1,977,600
        total                                                        = 3,280,000
    """
    forward = sum(2 * a * b for a, b in layers)
    backward = sum((2 if i == 0 else 4) * a * b for i, (a, b) in enumerate(layers))
    return forward + backward


def matmul_peak_gflops(sizes=(1024, 2048, 3072), repeats: int = 5) -> float:
    """Best float32 GFLOP/s of jitted square matmuls on the default JAX device."""
    best = 0.0
    matmul = jax.jit(jnp.matmul)
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
        matmul(a, b).block_until_ready()
        for _ in range(repeats):
            start = time.perf_counter()
            matmul(a, b).block_until_ready()
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="vaekit/PyTorch alternations")
    parser.add_argument("--epochs-per-round", type=int, default=2, help="epochs each side trains per round")
    args = parser.parse_args(argv)

    train = vk.load("fashion-mnist", "train")
    flops = training_flops_per_image()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device(s)); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads (default)")
    peak = matmul_peak_gflops()
    print(f"float32 matmul peak (measured): {peak:.1f} GFLOP/s; training FLOPs per image: {flops:,}")

    model = vk.make_vae(vk.VAEConfig())
    config = vk.TrainConfig(epochs=args.epochs_per_round, batch_size=BATCH, learning_rate=1e-3, loop="scan")
    ours = FitRounds(model, train, config)
    reference = TorchTrainer(TorchVAE, (train.images,), batch_size=BATCH, learning_rate=1e-3)
    reference.epoch()  # warm-up, like vaekit's compilation: not counted
    print(f"vaekit and PyTorch alternating, {args.epochs_per_round} epochs each per round:")
    standings = race(ours, lambda end: reference.epochs(args.epochs_per_round, end), rounds=args.rounds)
    compile_seconds = ours.compile_seconds
    peak = max(peak, matmul_peak_gflops())  # measured again: the best of both, in case the first was disturbed
    print(f"float32 matmul peak, best of two measurements: {peak:.1f} GFLOP/s")
    print(f"vaekit compile time: {compile_seconds[0]:.2f} s (first fit), {min(compile_seconds):.2f} s (fastest)")
    achieved = standings.best * flops / 1e9
    print(f"vaekit achieved {achieved:.1f} GFLOP/s = {100 * achieved / peak:.0f}% of the matmul peak "
          f"(median epoch: {100 * standings.median * flops / 1e9 / peak:.0f}%)")


if __name__ == "__main__":
    main()
