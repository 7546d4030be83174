"""Command line: ``python -m vaekit train | evaluate | zoo``.

``train`` writes ``OUT/checkpoint`` and ``OUT/metrics.json``; ``evaluate`` prints JSON;
``zoo`` trains the grid of models the dashboards use (skipping those already trained).

``train`` runs on several hosts with JAX's own multi-process runtime: start one process per
host with the same arguments plus ``--coordinator HOST:PORT --num-processes N --process-id I``
(``jax.distributed.initialize``); process 0 writes the checkpoint and metrics.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax

from vaekit import checkpoint, datasets, elbo, models, train, zoo


def _train(args: argparse.Namespace) -> int:
    out = pathlib.Path(args.out)
    model_config = models.VAEConfig(architecture=args.model, latent_dim=args.latent, likelihood=args.likelihood)
    train_config = train.TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        beta=args.beta,
        warmup_epochs=args.warmup_epochs,
        free_bits=args.free_bits,
        free_bits_per=args.free_bits_per,
        seed=args.seed,
    )
    train_data = datasets.load(args.dataset, "train", binarization=args.binarization, seed=args.seed)
    test_data = datasets.load(args.dataset, "test", binarization="static" if args.binarization else None, seed=args.seed)
    model = models.make_vae(model_config, seed=args.seed)
    writer = jax.process_index() == 0  # every process trains; one writes
    result = train.fit(model, train_data, test_data, train_config, progress=writer and not args.quiet)
    if not writer:
        return 0
    checkpoint.save(out / "checkpoint", model, opt_state=result.opt_state, train_config=train_config,
                    history=result.history)
    metrics = {
        "dataset": args.dataset,
        "binarization": args.binarization,
        "model_config": model_config.to_dict(),
        "train_config": train_config.to_dict(),
        "parameters": models.count_parameters(model),
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "compile_seconds": result.compile_seconds,
        "history": result.history,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    last = result.history[-1]
    print(json.dumps({"out": str(out), "epochs": len(result.history), "test_neg_elbo": last["test_neg_elbo"],
                      "images_per_s": last["images_per_s"]}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    run = pathlib.Path(args.run)
    restored = checkpoint.restore(run / "checkpoint")
    metrics_file = run / "metrics.json"
    if not metrics_file.is_file():
        raise checkpoint.CheckpointError(f"{metrics_file}: missing (it records which dataset the model was trained on)")
    recorded = json.loads(metrics_file.read_text())
    binarization = recorded.get("binarization")
    test_data = datasets.load(recorded["dataset"], "test", binarization="static" if binarization else None,
                              seed=recorded["train_config"]["seed"])
    scores = train.evaluate(restored.model, test_data, key=jax.random.key(args.seed), num_samples=args.num_samples,
                            progress=not args.quiet)
    result = {"dataset": recorded["dataset"], "binarization": binarization, "test_images": len(test_data),
              "test_neg_elbo": scores["neg_elbo"], "test_rate": scores["rate"],
              "test_distortion": scores["distortion"]}
    if args.num_samples:
        result["num_samples"] = args.num_samples
        result.update({name: scores[name] for name in ("iwae_nll", "iwae_bce") if name in scores})
    print(json.dumps(result))
    return 0


def _zoo(args: argparse.Namespace) -> int:
    family = zoo.Zoo(args.out, dataset=args.dataset, max_in_memory=1)
    points = list(zoo.grid(args.betas, args.latent_dims))
    trained, cached, seconds = 0, 0, 0.0
    for i, (beta, latent_dim) in enumerate(points, 1):
        where = f"[{i}/{len(points)}] beta={beta:g} latent_dim={latent_dim}"
        record = family.record(beta=beta, latent_dim=latent_dim)
        if record is not None:
            cached += 1
            print(f"{where}: in the zoo ({record.path})", flush=True)
            continue
        if args.list:
            print(f"{where}: not trained", flush=True)
            continue
        record = family.load(beta=beta, latent_dim=latent_dim, progress=not args.quiet).record
        trained += 1
        seconds += record.train_seconds
        print(f"{where}: trained in {record.train_seconds:.1f} s; test rate {record.rate:.2f}, "
              f"distortion {record.distortion:.2f}, -ELBO {record.neg_elbo:.2f} nats", flush=True)
    print(json.dumps({"zoo": str(family.root / args.dataset), "points": len(points), "trained": trained,
                      "already_trained": cached, "train_seconds": round(seconds, 1)}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vaekit", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    t = commands.add_parser("train", help="train a VAE and save a checkpoint with its metrics")
    t.add_argument("--dataset", choices=datasets.DATASETS, default="fashion-mnist")
    t.add_argument("--binarization", choices=datasets.BINARIZATIONS, default=None)
    t.add_argument("--model", choices=models.ARCHITECTURES, default="mlp")
    t.add_argument("--likelihood", choices=models.LIKELIHOODS, default="bernoulli")
    t.add_argument("--latent", type=int, default=20, help="latent dimension")
    t.add_argument("--beta", type=float, default=1.0)
    t.add_argument("--warmup-epochs", type=float, default=0.0)
    t.add_argument("--free-bits", type=float, default=0.0, help="nats per latent dimension left unpenalised")
    t.add_argument("--free-bits-per", choices=elbo.FREE_BITS_PER, default="example",
                   help="floor each example's KL per dimension, or the minibatch mean (Kingma et al., 2016)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--learning-rate", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="folder for the checkpoint and metrics.json")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    cluster = t.add_argument_group("several processes (jax.distributed; give all three or none)")
    cluster.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0's coordinator")
    cluster.add_argument("--num-processes", type=int, metavar="N", help="number of processes, one per host")
    cluster.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0 to N-1")
    t.set_defaults(handler=_train)

    e = commands.add_parser("evaluate", help="test -ELBO and IWAE bound of a trained run")
    e.add_argument("run", help="a folder written by 'train --out'")
    e.add_argument("--num-samples", type=int, default=1000,
                   help="importance samples k of the IWAE bound (0 skips it); reported as iwae_nll on binarized "
                        "data, iwae_bce (a cross-entropy, not -log p(x)) on grey data")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(handler=_evaluate)

    z = commands.add_parser("zoo", help="train the grid of models the dashboards use (beta x latent dimension)")
    z.add_argument("--dataset", choices=datasets.DATASETS, default=zoo.CHAPTER_DATASET)
    z.add_argument("--out", default=None, help=f"zoo folder (default: ${zoo.ROOT_ENV} or {zoo.DEFAULT_ROOT})")
    z.add_argument("--betas", type=float, nargs="+", default=list(zoo.CHAPTER_BETAS), metavar="BETA",
                   help="the betas to train (default: the chapters' %(default)s)")
    z.add_argument("--latent-dims", type=int, nargs="+", default=list(zoo.CHAPTER_LATENT_DIMS), metavar="DIM",
                   help="the latent dimensions to train (default: the chapters' %(default)s)")
    z.add_argument("--list", action="store_true", help="only say which points are trained")
    z.add_argument("--quiet", action="store_true", help="no progress bar")
    z.set_defaults(handler=_zoo)
    return parser


def _join_cluster(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Starts JAX's multi-process runtime when the three cluster options are given (before any computation)."""
    given = [getattr(args, name, None) is not None for name in ("coordinator", "num_processes", "process_id")]
    if not any(given):
        return
    if not all(given):
        parser.error("--coordinator, --num-processes and --process-id go together: give all three or none")
    if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
        parser.error(f"--process-id must be in 0..{args.num_processes - 1} and --num-processes >= 1; "
                     f"got {args.process_id} of {args.num_processes}")
    # CPU processes exchange gradients through gloo; GPU backends use their own collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _join_cluster(args, parser)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as e:  # our errors name the parameter and allowed values
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
