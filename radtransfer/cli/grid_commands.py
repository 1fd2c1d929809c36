"""The subcommands of many runs: ``grid`` (the paper's grid) and ``curve`` (a learning curve)."""

from __future__ import annotations

from .commands import write_resolved
from .options import UsageError


def cmd_grid(args) -> int:
    from .. import protocol

    executor = _executor(args)
    if args.repeats < 1:
        raise UsageError(f"--repeats must be 1 or more (runs per source, scenario and fold). Received: {args.repeats}.")
    image_set = args.image_set
    config = protocol.RADIMAGENET.replace(
        **{k: getattr(args, k) for k in ("image_size", "batch_size", "epochs", "seed") if getattr(args, k) is not None},
        run_eagerly=args.run_eagerly,
        **({"cache": args.cache} if args.cache else {}),
    )
    scenarios = protocol.radimagenet_scenarios(args.backbones) if args.backbones else None
    if args.max_scenarios:
        scenarios = (scenarios or protocol.radimagenet_scenarios())[: args.max_scenarios]
    write_resolved(args.out, args)
    records = protocol.run_grid(
        image_set,
        args.out,
        config=config,
        sources=tuple(
            protocol.with_preprocessings(args.sources, args.preprocessings) if args.preprocessings else args.sources
        ),
        folds=args.folds,
        scenarios=scenarios,
        repeats=args.repeats,
        shard=args.shard,
        shard_count=args.shard_count,
        executor=executor,
        weights_dir=args.weights_dir,
        faithful=args.faithful,
        task=args.task,
        verbose=1,
        on_bad=args.on_bad,
        paper_task=None if args.paper_task == "none" else args.paper_task,
        audit="off" if args.no_audit else "strict" if args.strict else "warn",
    )
    print(f"{len(records)} runs recorded in {args.out}")
    return 0


def _executor(args):
    """The executor of ``grid``'s and ``curve``'s --executor and Ray options."""
    from .. import protocol

    ray_options = {"address": args.address, "gpus_per_run": args.gpus_per_run, "cpus_per_run": args.cpus_per_run}
    if args.executor == "ray":
        return protocol.RayExecutor(**ray_options)
    if any(v is not None for v in ray_options.values()):
        raise UsageError("--address, --gpus-per-run and --cpus-per-run need --executor ray.")
    return "sequential"


def cmd_curve(args) -> int:
    from .. import protocol

    config = protocol.RADIMAGENET.replace(
        **{k: getattr(args, k) for k in ("image_size", "batch_size", "epochs", "seed") if getattr(args, k) is not None},
        run_eagerly=args.run_eagerly,
        **({"cache": args.cache} if args.cache else {}),
    )
    write_resolved(args.out, args)
    table = protocol.learning_curve(
        args.image_set,
        args.out,
        fractions=args.fractions,
        sources=tuple(args.sources),
        backbone=args.backbone,
        strategy=args.strategy,
        learning_rate=args.learning_rate,
        config=config,
        folds=args.folds,
        repeats=args.repeats,
        shard=args.shard,
        shard_count=args.shard_count,
        executor=_executor(args),
        weights_dir=args.weights_dir,
        faithful=args.faithful,
        task=args.task,
        verbose=1,
        on_bad=args.on_bad,
        audit="off" if args.no_audit else "strict" if args.strict else "warn",
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"learning curve in {args.out} (learning_curve.csv, .md, .png)")
    return 0
