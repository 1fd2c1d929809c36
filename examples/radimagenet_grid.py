"""The RadImageNet comparison on one dataset: the 24-scenario grid per weight source, then the report.

    python examples/radimagenet_grid.py --quick --weights-dir weights/
    # compares weight sources, so it needs their .h5 files (--quick: ResNet50's RadImageNet and ImageNet files;
    # docs/weights.md); without them it stops at once with one line naming each missing file.
    python examples/radimagenet_grid.py --data /data/acl/manifest.csv --image-col filename \
        --label-col acl_label --patient-col patient --folds 5 --out grids/acl_mri
    # on n machines: add --shard k/n to each (--shard auto in a SLURM array), then run the report once
    # all are done; on the GPUs of this machine or a Ray cluster: add --executor ray (needs radtransfer[ray]).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from radtransfer import plots, protocol, report  # noqa: E402

from _common import base_parser, load_images, one_line_errors  # noqa: E402


@one_line_errors
def main(argv=None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=None, help="k folds (default: the 75/10/15 split)")
    parser.add_argument("--sources", nargs="+", default=["radimagenet", "imagenet"])
    parser.add_argument("--shard", default=None, help="k/n, or auto (a SLURM array task's share)")
    parser.add_argument(
        "--executor",
        choices=("sequential", "ray"),
        default="sequential",
        help="ray: one run per GPU on this machine, or on the cluster of $RAY_ADDRESS",
    )
    parser.add_argument("--faithful", action="store_true")
    parser.add_argument("--epochs", type=int, default=None, help="override the protocol's 30 epochs")
    parser.add_argument("--batch-size", type=int, default=None, help="override the protocol's batch of 256")
    args = parser.parse_args(argv)
    args.out = args.out or "grids/synthetic_brain_mri"
    config = protocol.RADIMAGENET
    scenarios = None
    if args.quick:
        config = config.replace(image_size=32, batch_size=8, epochs=1, run_eagerly=True, bootstrap=100)
        scenarios = [protocol.Scenario("resnet50", "unfreeze_top10", 1e-3)]
        args.folds = args.folds or 2
        print(
            f"--quick: one scenario (resnet50, unfreeze_top10, lr 1e-3) instead of the paper's 24, {args.folds} "
            "folds, 32 px, batch 8, 1 epoch (--epochs and --batch-size, if given, still apply)"
        )
    overrides = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size)) if v is not None}
    config = config.replace(**overrides) if overrides else config
    images = load_images(args)
    protocol.run_grid(
        images,
        args.out,
        config=config,
        sources=tuple(args.sources),
        folds=args.folds,
        scenarios=scenarios,
        shard=args.shard,
        executor=args.executor,
        weights_dir=args.weights_dir,
        faithful=args.faithful,
    )
    if args.shard:
        print("Shard done; run the report once every shard has finished: radtransfer report", args.out)
        return 0
    computed = report.tables(args.out)  # once: the summary's warnings (a frozen collapse) are said once
    written = report.write(args.out, computed=computed)
    figures = plots.grid_figures(args.out)
    print(report.to_markdown(computed["summary"]))
    print("\nwritten:\n  " + "\n  ".join(list(written.values()) + figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
