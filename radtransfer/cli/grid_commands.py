"""The subcommands of many runs: ``grid`` (the paper's grid) and ``curve`` (a learning curve)."""

from __future__ import annotations

from .commands import write_resolved


def _protocol_config(args):
    """The paper's settings with the command's --cache, --epochs, --image-size, --batch-size, --seed, --run-eagerly."""
    from .. import protocol

    return protocol.RADIMAGENET.replace(
        **{k: getattr(args, k) for k in ("image_size", "batch_size", "epochs", "seed") if getattr(args, k) is not None},
        run_eagerly=args.run_eagerly,
        **({"cache": args.cache} if args.cache else {}),
    )


def cmd_grid(args) -> int:
    from .. import protocol

    scenarios = protocol.radimagenet_scenarios(args.backbones) if args.backbones else None
    if args.max_scenarios:
        scenarios = (scenarios or protocol.radimagenet_scenarios())[: args.max_scenarios]
    write_resolved(args.out, args)
    records = protocol.run_grid(
        args.image_set, args.out, args.grid_options, config=_protocol_config(args), scenarios=scenarios
    )
    print(f"{len(records)} runs recorded in {args.out}")
    return 0


def cmd_curve(args) -> int:
    from .. import protocol

    write_resolved(args.out, args)
    table = protocol.learning_curve(args.image_set, args.out, args.grid_options, config=_protocol_config(args))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"learning curve in {args.out} (learning_curve.csv, .md, .png)")
    return 0
