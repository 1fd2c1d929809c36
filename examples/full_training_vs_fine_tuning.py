"""Full training vs fine-tuning at 10%, 25%, 50% and 100% of the training set (Tajbakhsh et al. 2016).

For each share of the training patients (nested: each share's patients contain the smaller share's), trains the
same backbone from random initialisation and fine-tunes it from pretrained weights, evaluates both on the same
patient-level test set, and plots test AUC against the training-set size (``rt.protocol.learning_curve``, as
``radtransfer curve DATA --out DIR``). With --layerwise, runs the layer-wise search instead: the head only, then
one more stage at a time, up to the whole network, and plots validation AUC against depth.

    python examples/full_training_vs_fine_tuning.py --quick
    python examples/full_training_vs_fine_tuning.py --data /data/chest_xray --out runs/scratch_vs_ft
    python examples/full_training_vs_fine_tuning.py --layerwise --data /data/chest_xray
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import radtransfer as rt  # noqa: E402

from _common import apply_quick, base_parser, load_images, one_line_errors, pretrained  # noqa: E402


def learning_curve(args, images, out):
    """``protocol.learning_curve``: one grid per nested share of the training patients (val and test fixed),
    random initialisation against the best pretrained weights found; resumable (rerun to finish)."""
    _, source = pretrained(args.backbone, args.weights_dir)
    sources = (source, None) if source != "random" else (None,)
    config = rt.protocol.RADIMAGENET.replace(
        epochs=args.epochs, image_size=args.image_size, batch_size=args.batch_size, run_eagerly=args.quick
    )
    table = rt.protocol.learning_curve(
        images,
        out,
        fractions=args.fractions,
        sources=sources,
        backbone=args.backbone,
        strategy="unfreeze_all",
        config=config,
        repeats=args.repeats,
        weights_dir=args.weights_dir,
        audit="off" if args.quick else "warn",
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"table: {out / 'learning_curve.md'}; plot: {out / 'learning_curve.png'}")
    return table


def layerwise(args, images, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, val, _ = images.split(val=0.10, test=0.15, by="patient", seed=726)
    weights, source = pretrained(args.backbone, args.weights_dir)
    build = lambda: rt.build_model(
        args.backbone,
        weights=weights,
        num_classes=images.num_classes,
        input_shape=(args.image_size, args.image_size, 3),
    )
    depths = [0, 1] if args.quick else None
    table = rt.layerwise_search(
        build,
        train,
        val,
        depths=depths,
        learning_rate=1e-4,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=726,
        verbose=0,
        run_eagerly=args.quick,
        out_dir=out / "layerwise",
    )
    table.to_csv(out / "layerwise.csv", index=False)
    print(table.to_string(index=False))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(len(table)), table["val_auc"], marker="o")
    ax.set_xticks(range(len(table)))
    ax.set_xticklabels([str(d) for d in table["depth"]])
    ax.set(
        xlabel="Stages unfrozen from the top (0 = head only)",
        ylabel="Validation AUC",
        title=f"Layer-wise fine-tuning, {args.backbone} "
        + ("(random initialisation: no weights found)" if source == "random" else f"({source} weights)"),
    )
    fig.tight_layout()
    fig.savefig(out / "layerwise.png", dpi=150)
    print(f"plot: {out / 'layerwise.png'}")
    return table


@one_line_errors
def main(argv=None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="densenet121")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.10, 0.25, 0.50, 1.0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1, help="runs per source and share, each with its own seed")
    parser.add_argument("--layerwise", action="store_true", help="run layerwise_search instead")
    args = parser.parse_args(argv)
    args.out = args.out or "runs/full_training_vs_fine_tuning"
    if args.quick:  # a backbone or size given is kept, and the line printed says what --quick changed
        sizes = {"epochs": 1, "image_size": 32, "batch_size": 8, "fractions": [0.5, 1.0]}
        apply_quick(parser, args, argv, backbone="resnet50", **sizes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = load_images(args, quick_patients=20)  # 20: about 3 training patients per class, so half is fewer
    (layerwise if args.layerwise else learning_curve)(args, images, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
