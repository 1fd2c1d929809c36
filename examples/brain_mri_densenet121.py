"""Four-class brain-tumour MRI classification with DenseNet121 (glioma, meningioma, no tumour, pituitary).

The recipe of the public brain-tumour MRI notebooks: DenseNet121 from pretrained weights, the RadImageNet
augmentation, everything unfrozen at a low learning rate, early stopping and learning-rate reduction on
validation loss. Reports accuracy, per-class metrics and the confusion matrix on a patient-level test split.

    python examples/brain_mri_densenet121.py --quick                     # synthetic data, a smoke test
    python examples/brain_mri_densenet121.py --data /data/brain_tumor_mri/Training --out runs/brain
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import radtransfer as rt  # noqa: E402
from radtransfer.evaluation.metrics import describe_interval  # noqa: E402
from radtransfer.utils.io import write_json_atomic  # noqa: E402

from _common import apply_quick, base_parser, load_images, one_line_errors, pretrained  # noqa: E402


@one_line_errors
def main(argv=None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args(argv)
    args.out = args.out or "runs/brain_mri_densenet121"
    if args.quick:  # sizes given are kept; one line says what --quick changed
        apply_quick(parser, args, argv, epochs=1, image_size=32, batch_size=8)
    out = Path(args.out)

    images = load_images(args)
    train, val, test = images.split(val=0.10, test=0.15, by="patient", seed=726)
    print(f"{images}\ntrain {train}\nval   {val}\ntest  {test}")
    weights, source = pretrained("densenet121", args.weights_dir)
    model = rt.build_model(
        "densenet121",
        weights=weights,
        num_classes=images.num_classes,
        input_shape=(args.image_size, args.image_size, 3),
    )
    result = rt.fine_tune(
        model,
        train,
        val,
        strategy="unfreeze_all",
        learning_rate=args.lr,
        epochs=args.epochs,
        early_stopping=5,
        reduce_lr=2,
        out_dir=out / "run",
        batch_size=args.batch_size,
        augment="radimagenet",
        seed=726,
        verbose=2,
        run_eagerly=args.quick,
    )
    metrics = rt.evaluate(model, test, bootstrap=200 if args.quick else 1000)
    metrics.pop("predictions")
    write_json_atomic(out / "test_metrics.json", metrics)

    names = metrics["class_names"]
    print(f"\nweights: {source}; best epoch {result.best_epoch} of {result.epochs_run}")  # both count from 1
    print(
        f"test accuracy {metrics['accuracy']:.3f}, balanced accuracy {metrics['balanced_accuracy']:.3f}, "
        f"macro AUC {metrics['auc']:.3f} ({describe_interval(metrics)})"
    )
    print(f"\n{'class':12s} {'AUC':>6s} {'sensitivity':>12s} {'specificity':>12s}")
    for name in names:
        print(
            f"{name:12s} {metrics['per_class_auc'][name]:6.3f} {metrics['sensitivity'][name]:12.3f} "
            f"{metrics['specificity'][name]:12.3f}"
        )
    print("\nconfusion matrix (rows: true, columns: predicted)")
    width = max(len(n) for n in names) + 2
    print(" " * width + "".join(f"{n:>{width}s}" for n in names))
    for name, row in zip(names, np.array(metrics["confusion_matrix"])):
        print(f"{name:>{width}s}" + "".join(f"{v:>{width}d}" for v in row))
    print(f"\noutputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
