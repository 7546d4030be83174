"""Training throughput of the conv models: vaekit against PyTorch, interleaved in one process.

Two models, each trained by ``vaekit.fit`` (the loop ``"auto"`` picks) and by its PyTorch
twin in ``_torch_conv.py``, same architecture, data, batch size and Adam 1e-3, alternating
epoch by epoch so that both see the same machine load:

* the conv VAE: Conv 1→32 k4 s2, Conv 32→64 k4 s2, latent 16, a decoder mirroring it with
  ×2 upsamplings (``--upsampling``, transposed convolutions by default), Bernoulli
  likelihood, batch 128, on Fashion-MNIST training images;
* the U-Net of ``vaekit.segmentation`` (64×64 scenes of Fashion-MNIST items, 16-32-64
  channels, 11-class softmax, batch 32).

Before that, the facts the kit's choices rest on are measured, not assumed: every conv
layer of these models, forward and backward, computed with flax's formulation
(``ConvPlan()``) and with the plan ``vaekit._fastconv.plan_for`` picks for this backend; each
convolution with several input channels split into its three parts (output, input
gradient, kernel gradient), vaekit against PyTorch, which shows where the remaining time
goes; and the conv VAE trained with each loop (whole-epoch scan, per-step jit).

The best undisturbed epoch of each side is compared (``_timing.py``); the median is printed
beside it. The last line is one JSON object with the ratios ``conv_vae_vs_pytorch`` and
``unet_vs_pytorch`` (vaekit images/s over PyTorch images/s, best epochs).

Run (from the repository root, with the ``bench`` extra installed)::

    python benchmarks/conv_throughput.py [--rounds 4] [--vae-images 15360] [--unet-scenes 1024]
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _timing import FitRounds, Standings, race  # noqa: E402
from _torch_conv import TorchConvVAE, TorchUNet  # noqa: E402
from _torch_trainer import TorchTrainer  # noqa: E402

import vaekit as vk  # noqa: E402
from vaekit import _fastconv, nn, segmentation  # noqa: E402
from vaekit._engine import compiler_options  # noqa: E402  (layers compile as vaekit.fit compiles)


def layer_table(upsampling: str) -> list[tuple[str, nnx.Module, tuple[int, ...]]]:
    """The conv layers of both models, each with the input shape it sees in training."""
    rngs = nnx.Rngs(0)
    up = lambda a, b: nn.make_upsample(upsampling, a, b, rngs=rngs)
    return [
        ("vae  conv 1->32 k4 s2 @28", nn.Downsample(1, 32, rngs=rngs), (128, 28, 28, 1)),
        ("vae  conv 32->64 k4 s2 @14", nn.Downsample(32, 64, rngs=rngs), (128, 14, 14, 32)),
        (f"vae  {upsampling} 64->32 @7", up(64, 32), (128, 7, 7, 64)),
        (f"vae  {upsampling} 32->1 @14", up(32, 1), (128, 14, 14, 32)),
        ("unet conv 1->16 k3 @64", nn.Conv(1, 16, 3, rngs=rngs), (32, 64, 64, 1)),
        ("unet conv 16->16 k3 @64", nn.Conv(16, 16, 3, rngs=rngs), (32, 64, 64, 16)),
        ("unet conv 16->32 k4 s2 @64", nn.Downsample(16, 32, rngs=rngs), (32, 64, 64, 16)),
        ("unet conv 32->32 k3 @32", nn.Conv(32, 32, 3, rngs=rngs), (32, 32, 32, 32)),
        ("unet conv 32->64 k4 s2 @32", nn.Downsample(32, 64, rngs=rngs), (32, 32, 32, 32)),
        ("unet conv 64->64 k3 @16", nn.Conv(64, 64, 3, rngs=rngs), (32, 16, 16, 64)),
        (f"unet {upsampling} 64->32 @16", up(64, 32), (32, 16, 16, 64)),
        ("unet conv 64->32 k3 @32", nn.Conv(64, 32, 3, rngs=rngs), (32, 32, 32, 64)),
        (f"unet {upsampling} 32->16 @32", up(32, 16), (32, 32, 32, 32)),
        ("unet conv 32->16 k3 @64", nn.Conv(32, 16, 3, rngs=rngs), (32, 64, 64, 32)),
    ]


def median_ms(*calls, repeats: int) -> list[float]:
    """Median milliseconds of each ``call()``; each waits for its result.

    After one warm-up call each, the calls take turns, so that a drift in the machine's
    speed touches all of them alike.
    """
    times = [[] for _ in calls]
    for call in calls:
        call()
    for _ in range(repeats):
        for call, spent in zip(calls, times):
            start = time.perf_counter()
            call()
            spent.append(time.perf_counter() - start)
    return [1e3 * float(np.median(spent)) for spent in times]


def compiled(function, *args):
    """``function`` compiled as ``vaekit.fit`` compiles, called on ``args``, waited for."""
    executable = jax.jit(function).lower(*args).compile(compiler_options(jax.devices()[0]))
    return lambda: jax.block_until_ready(executable(*args))


def layer_step(layer: nnx.Module, shape: tuple[int, ...], plan: _fastconv.ConvPlan):
    """One forward and backward pass of ``layer`` under ``plan``, compiled.

    Backward gives the parameters' gradients, and the input's too unless the input is a
    one-channel image: the first layer's input is the data, whose gradient training never forms.
    """
    graphdef, params = nnx.split(layer)
    x = jax.random.uniform(jax.random.key(0), shape)

    def loss(params, x):
        return jnp.sum(jnp.square(nnx.merge(graphdef, params)(x)))

    with _fastconv.use_plan(plan):
        return compiled(jax.grad(loss, argnums=(0,) if shape[-1] == 1 else (0, 1)), params, x)


def compare_plans(upsampling: str, repeats: int) -> None:
    backend = jax.default_backend()
    chosen = _fastconv.plan_for(backend)
    print(f"conv layers, forward + backward, median ms: flax's formulation vs "
          f"vaekit._fastconv.plan_for({backend!r}) = {chosen}")
    for name, layer, shape in layer_table(upsampling):
        flax_ms, ours_ms = median_ms(layer_step(layer, shape, _fastconv.ConvPlan()),
                                     layer_step(layer, shape, chosen), repeats=repeats)
        print(f"  {name:32s} flax {flax_ms:7.2f}  plan {ours_ms:7.2f}  speed-up {flax_ms / ours_ms:5.2f}x", flush=True)


# (batch, size, in, out, kernel, stride): the convolutions of both models with several input channels
CONVOLUTIONS = [
    (128, 14, 32, 64, 4, 2),
    (32, 64, 16, 16, 3, 1),
    (32, 64, 16, 32, 4, 2),
    (32, 32, 32, 32, 3, 1),
    (32, 32, 32, 64, 4, 2),
    (32, 16, 64, 64, 3, 1),
    (32, 32, 64, 32, 3, 1),
    (32, 64, 32, 16, 3, 1),
]


def compare_parts(repeats: int) -> None:
    """Each convolution's output, input gradient and kernel gradient, vaekit (this backend's plan) and PyTorch."""
    print("convolutions by part, median ms, vaekit / pytorch (SAME padding, PyTorch's padding=1):")
    for batch, size, cin, cout, k, s in CONVOLUTIONS:
        rng = np.random.default_rng(0)
        x, kernel = rng.random((batch, size, size, cin), np.float32), rng.random((k, k, cin, cout), np.float32)
        dy = rng.random((batch, -(-size // s), -(-size // s), cout), np.float32)
        conv = functools.partial(_fastconv.conv, strides=s)
        ours = [
            compiled(conv, x, kernel),
            compiled(lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0], x, kernel, dy),
            compiled(lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)[0], x, kernel, dy),
        ]
        xt, wt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        dyt = torch.from_numpy(dy.transpose(0, 3, 1, 2).copy())
        theirs = [
            lambda: torch.nn.functional.conv2d(xt, wt, stride=s, padding=1),
            lambda: torch.nn.grad.conv2d_input(xt.shape, wt, dyt, stride=s, padding=1),
            lambda: torch.nn.grad.conv2d_weight(xt, wt.shape, dyt, stride=s, padding=1),
        ]
        # One function at a time: PyTorch's threads spin for a while after each call.
        cells = [f"{median_ms(a, repeats=repeats)[0]:6.2f} / {median_ms(b, repeats=repeats)[0]:6.2f}"
                 for a, b in zip(ours, theirs)]
        print(f"  {cin:2d}->{cout:2d} k{k} s{s} @{size:2d} batch {batch:3d}: output {cells[0]}  input grad {cells[1]}  "
              f"kernel grad {cells[2]}", flush=True)


def compare_loops(images: np.ndarray, upsampling: str) -> None:
    print(f"conv VAE, one epoch of {images.shape[0]:,} images with each loop (compile excluded):")
    for loop in ("scan", "step"):
        model = vk.make_vae(vk.VAEConfig(architecture="conv", latent_dim=16, upsampling=upsampling))
        result = vk.fit(model, (images,), None, vk.TrainConfig(epochs=1, batch_size=128, loop=loop), progress=False)
        print(f"  {loop:5s} {result.history[0]['images_per_s']:8,.0f} images/s", flush=True)
    model = vk.make_vae(vk.VAEConfig(architecture="conv", latent_dim=16, upsampling=upsampling))
    print(f"  vaekit._fastconv.preferred_loop picks {_fastconv.preferred_loop(model)!r} for it")


def epoch_config(batch_size: int) -> vk.TrainConfig:
    return vk.TrainConfig(epochs=1, batch_size=batch_size, learning_rate=1e-3)


def race_one_epoch_rounds(ours: FitRounds, reference: TorchTrainer, *, rounds: int) -> Standings:
    """One epoch a side per round; PyTorch warms up first, as vaekit compiles first (neither counted)."""
    reference.epoch()
    standings = race(ours, lambda end: reference.epochs(1, end), rounds=rounds)
    print(f"  vaekit compile time {min(ours.compile_seconds):.2f}-{max(ours.compile_seconds):.2f} s")
    return standings


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="vaekit/PyTorch alternations per model")
    parser.add_argument("--vae-images", type=int, default=15360, help="Fashion-MNIST training images per VAE epoch")
    parser.add_argument("--unet-scenes", type=int, default=1024, help="64x64 scenes per U-Net epoch")
    parser.add_argument("--upsampling", choices=nn.UPSAMPLINGS, default="transposed")
    parser.add_argument("--layer-repeats", type=int, default=20, help="timed calls per layer and plan")
    args = parser.parse_args(argv)

    print(f"jax {jax.__version__} on {jax.default_backend()} ({jax.device_count()} device(s)); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads (default)")
    images = vk.load("fashion-mnist", "train").images[: args.vae_images]
    scenes = vk.segmentation_scenes(args.unet_scenes, "train", seed=0)

    compare_plans(args.upsampling, args.layer_repeats)
    compare_parts(args.layer_repeats)
    compare_loops(images[:2560], args.upsampling)

    print(f"conv VAE ({args.upsampling} upsampling), batch 128, {images.shape[0]:,} images per epoch:")
    vae = vk.make_vae(vk.VAEConfig(architecture="conv", latent_dim=16, upsampling=args.upsampling))
    torch_vae = TorchTrainer(lambda: TorchConvVAE(latent=16, upsampling=args.upsampling), (images,), batch_size=128)
    vae = race_one_epoch_rounds(FitRounds(vae, (images,), epoch_config(128)), torch_vae, rounds=args.rounds)

    print(f"U-Net ({args.upsampling} upsampling), batch 32, {len(scenes):,} scenes per epoch:")
    unet = segmentation.UNet(segmentation.UNetConfig(upsampling=args.upsampling), rngs=nnx.Rngs(0))
    torch_unet = TorchTrainer(lambda: TorchUNet(in_channels=scenes.images.shape[-1], upsampling=args.upsampling), scenes.arrays, batch_size=32)
    ours = FitRounds(unet, scenes.arrays, epoch_config(32), objective=segmentation.SegmentationObjective())
    unet = race_one_epoch_rounds(ours, torch_unet, rounds=args.rounds)

    print(json.dumps({"conv_vae_vs_pytorch": round(vae.best / vae.reference_best, 3),
                      "unet_vs_pytorch": round(unet.best / unet.reference_best, 3)}))


if __name__ == "__main__":
    main()
