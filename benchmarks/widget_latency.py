"""Latency of each dashboard: from setting a widget's value to the new PNG bytes in its image widget.

Each dashboard is built on trained models of the zoo (the chapters' Fashion-MNIST grid;
missing points are trained first, about 10 s each), then one control is moved through
its range many times. A move is timed from ``control.value = v`` to the return of the
synchronous callback, after which the new bytes are in the ``ipywidgets.Image`` (checked:
every timed move must change them). Headless, so the time to send the bytes to a browser
is not included.

Run: ``flock /tmp/vaekit-bench.lock python benchmarks/widget_latency.py``. The last line is
one JSON object: each dashboard's p95 in milliseconds (target: <= 10 ms).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

import vaekit as vk

TARGET_P95_MS = 10.0


def time_moves(control, values, images) -> np.ndarray:
    """Milliseconds per move; fails if a move leaves an image unchanged."""
    times = []
    for value in values:
        before = [image.value for image in images]
        tic = time.perf_counter()
        control.value = value
        times.append(time.perf_counter() - tic)
        if any(image.value == old for image, old in zip(images, before)):
            raise RuntimeError(f"moving {control.description} to {value!r} did not change the image")
    return 1e3 * np.asarray(times)


def cycle(values, moves: int) -> list:
    """``values`` back and forth, so that consecutive values always differ."""
    path = list(values) + list(values[-2:0:-1])
    return [path[i % len(path)] for i in range(1, moves + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=300, help="moves per dashboard (the first 5 warm up)")
    parser.add_argument("--zoo", default=None, help="zoo folder (default: the repository's zoo/)")
    args = parser.parse_args()

    family = vk.zoo.Zoo(args.zoo)
    betas, latent_dims = (0.3, 1.0, 3.0), (2, 8, 32)
    for beta, latent_dim in vk.zoo.grid(betas, latent_dims):
        if not family.is_trained(beta=beta, latent_dim=latent_dim):
            print(f"training beta={beta:g} latent_dim={latent_dim} for the benchmark", flush=True)
            family.load(beta=beta, latent_dim=latent_dim, progress=False)
    model8 = family.load(beta=1.0, latent_dim=8)
    model2 = family.load(beta=1.0, latent_dim=2)

    tic = time.perf_counter()
    explorer = vk.widgets.BetaLatentExplorer(family, beta=1.0, latent_dim=8)
    build_explorer = time.perf_counter() - tic
    traversal = vk.widgets.LatentTraversal(model8)
    latent_map = vk.widgets.LatentMap(model2)
    interpolation = vk.widgets.Interpolation(model8)
    gallery = vk.widgets.SampleGallery(model8)
    explorer_images = [explorer.reconstructions.widget, explorer.samples.widget, explorer.plane.overlay]
    rows = len(traversal.grid_dims) * len(traversal.grid_offsets)

    cases = {
        # beta moves between trained points of one latent size (in memory after construction).
        "beta_latent": (explorer.beta_slider, cycle(betas, args.moves), explorer_images),
        # the top slider: decodes the current code and the whole traversal grid.
        "traversal": (traversal.slider(traversal.order[0]), cycle(np.linspace(-3, 3, 25).round(2), args.moves),
                      [traversal.current.widget, traversal.grid.widget]),
        "latent_map": (latent_map.z1, cycle(np.linspace(-2, 2, 41).round(2), args.moves),
                       [latent_map.picked.widget, latent_map.scatter.overlay]),
        "interpolation": (interpolation.t, cycle(np.linspace(0, 1, 21).round(2), args.moves),
                          [interpolation.current.widget]),
        "sample_gallery": (gallery.temperature, cycle(np.linspace(0.1, 2.0, 20).round(2), args.moves),
                           [gallery.gallery.widget]),
    }
    print(f"devices: {jax.local_device_count()} CPU; {args.moves} moves per dashboard; "
          f"explorer built in {build_explorer:.2f} s with {len(explorer.points)} zoo points preloaded")
    print(f"traversal grid: {rows} images + 1 per move; sample gallery: 64 images per move")
    p95s = {}
    for name, (control, values, images) in cases.items():
        for value in values[:5]:  # warm-up: first calls of each compiled shape
            control.value = value
        times = time_moves(control, values[5:], images)
        p95s[name] = round(float(np.percentile(times, 95)), 2)
        print(f"{name:15s} median {np.median(times):6.2f} ms   p95 {p95s[name]:6.2f} ms   max {times.max():6.2f} ms")

    # Latent-dimension moves change the model's shape; all trained points are preloaded and compiled.
    latent_moves = time_moves(explorer.latent_slider, cycle(latent_dims, 61)[1:], explorer_images)
    print(f"{'beta_latent':15s} (latent-dimension moves) median {np.median(latent_moves):6.2f} ms   "
          f"p95 {np.percentile(latent_moves, 95):6.2f} ms")
    # Without preloading, as in a fresh kernel: the first visit of a point restores it from disk,
    # and the first of a latent size also compiles.
    jax.clear_caches()
    cold = vk.zoo.Zoo(family.root)
    tic = time.perf_counter()
    cold_explorer = vk.widgets.BetaLatentExplorer(cold, beta=1.0, latent_dim=8, preload=False)
    cold_build = time.perf_counter() - tic
    cold_beta = time_moves(cold_explorer.beta_slider, [3.0, 0.3], [cold_explorer.reconstructions.widget])
    cold_latent = time_moves(cold_explorer.latent_slider, [32, 2], [cold_explorer.reconstructions.widget])
    print(f"{'beta_latent':15s} without preload: built in {cold_build:.2f} s; first visits: "
          f"{', '.join(f'{t:.0f}' for t in cold_beta)} ms (restore), "
          f"{', '.join(f'{t:.0f}' for t in cold_latent)} ms (restore + compile a new latent size)")
    print(f"target p95 <= {TARGET_P95_MS:g} ms: " + ", ".join(
        f"{name} {'ok' if p95 <= TARGET_P95_MS else 'MISSED'}" for name, p95 in p95s.items()))
    print(json.dumps(p95s))


if __name__ == "__main__":
    main()
