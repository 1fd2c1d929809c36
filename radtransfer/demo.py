"""`radtransfer demo`: the whole path on the built-in synthetic brain-MRI data, ending in a report."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .evaluation.metrics import describe_interval

# The full demo: 96 patients (16 in the test part), DenseNet121 at 64 px for 12 epochs, about 2.5 minutes on 2
# cores, a third of it building the training graph (docs/performance.md, "make demo").
FULL = {"patients": 96, "slices": 2, "source_size": 128, "image_size": 64, "epochs": 12, "batch_size": 16}
QUICK = {"patients": 12, "slices": 2, "source_size": 48, "image_size": 32, "epochs": 1, "batch_size": 8}


def run_demo(out_dir="demo_output", quick: bool = False, weights_dir=None, log=print) -> Path:
    """Runs the demo and returns the path of its markdown report."""
    from . import evaluate, fine_tune, plots

    settings = QUICK if quick else FULL
    out = Path(out_dir)
    start = time.perf_counter()
    image_set, (train, val, test) = _demo_data(out, settings, log)
    model, source, path, notice = _demo_model(image_set, settings, weights_dir, log)
    size = settings["image_size"]
    learning_rate = 1e-3 if path is None else 1e-4
    log(
        f"[demo] fine-tuning DenseNet121 at {size}×{size}: {len(train)} training, {len(val)} validation, "
        f"{len(test)} test images (patient-level split), {settings['epochs']} epochs"
    )
    run_dir = out / "run"
    result = fine_tune(
        model,
        train,
        val,
        strategy="unfreeze_all",
        learning_rate=learning_rate,
        epochs=settings["epochs"],
        out_dir=run_dir,
        seed=726,
        batch_size=settings["batch_size"],
        augment="radimagenet",
        verbose=2,
        run_eagerly=quick,
        bn_momentum=0.9 if path is None else None,
    )
    model = result.model  # the object passed in, holding the best epoch's weights
    metrics = evaluate(model, test, bootstrap=200 if quick else 1000, seed=0)
    figures = out / "figures"
    roc = plots.roc_from_predictions(
        metrics["predictions"]["y_true"],
        metrics["predictions"]["probabilities"],
        metrics["class_names"],
        figures / "roc_test",
        patient_ids=metrics["predictions"].get("patient_ids"),
    )
    curves = plots.training_curves(run_dir, figures / "training_curves")

    overlays, gradcam_summary = _gradcam_examples(model, test, size, figures)
    seconds = time.perf_counter() - start
    report = _write_report(
        out,
        image_set,
        train,
        val,
        test,
        source,
        path,
        notice,
        settings,
        result,
        metrics,
        roc,
        curves,
        overlays,
        gradcam_summary,
        seconds,
    )
    log(
        f"[demo] test AUC {metrics['auc']:.3f} ({describe_interval(metrics)}), "
        f"accuracy {metrics['accuracy']:.3f}; {seconds:.0f} s in all"
    )
    log(f"[demo] report: {report}")
    log(f"[demo] figures: {figures}")
    return report


def _demo_data(out: Path, settings: dict, log):
    """The synthetic brain-MRI set written under ``out/data``, and its patient-level (train, val, test) split."""
    from .data.synthetic import load_synthetic_brain_mri

    log(f"[demo] writing synthetic brain-MRI data ({settings['patients']} patients × {settings['slices']} slices)")
    image_set = load_synthetic_brain_mri(
        out / "data",
        n_patients=settings["patients"],
        slices_per_patient=settings["slices"],
        image_size=settings["source_size"],
        seed=0,
    )
    return image_set, image_set.split(val=0.10, test=0.15, by="patient", seed=726)


def _demo_model(image_set, settings: dict, weights_dir, log):
    """DenseNet121 with the best weights found (RadImageNet, else ImageNet, else random, with a notice), and
    (model, source, path, notice)."""
    from . import build_model
    from .models.weights import best_available_weights

    source, path, notice = best_available_weights("densenet121", weights_dir)
    if notice:
        banner = "!" * 100
        log(f"\n{banner}\n{notice}\n{banner}\n")
    else:
        log(f"[demo] using {source} weights: {path}")
    size = settings["image_size"]
    model = build_model(
        "densenet121",
        weights=None if path is None else str(path),
        num_classes=image_set.num_classes,
        input_shape=(size, size, 3),
    )
    return model, source, path, notice


def _gradcam_examples(model, test, size: int, figures: Path):
    """Grad-CAM overlays of test slices with a lesion (two per tumour class the test set has), and how often the
    heatmap's peak falls in the lesion (the pointing game) against a random point's rate."""
    from .data import make_dataset
    from .evaluation.gradcam import gradcam, last_conv_layer, pointing_game, random_point_hit_rate, save_overlays

    lesion_rows = [i for i, name in enumerate(test.class_names) if name != "no_tumor"]
    chosen = []
    for label in lesion_rows:
        chosen += [i for i in np.flatnonzero(test.labels == label)][:2]
    gradcam_summary = {}
    overlays = []
    if chosen:
        subset = test.subset(chosen)
        images = np.concatenate(
            [
                b[0].numpy()
                for b in make_dataset(subset, image_size=(size, size), batch_size=16, shuffle=False, cache=False)
            ]
        )
        masks = _masks(subset, size)
        layer = last_conv_layer(model.get_layer("backbone"), min_size=6)
        heatmaps = gradcam(model, images, layer=layer)
        probabilities = model.predict(images, verbose=0)
        titles = [
            f"true {test.class_names[t]}, predicted {test.class_names[p.argmax()]} ({p.max():.2f})"
            for t, p in zip(subset.labels, probabilities)
        ]
        overlays = save_overlays(
            images, heatmaps, figures / "gradcam", names=[Path(p).name for p in subset.paths], titles=titles
        )
        hits = pointing_game(heatmaps, masks)
        gradcam_summary = {
            "images": len(chosen),
            "pointing_game": float(np.nanmean(hits)),
            "random_point": random_point_hit_rate(masks),
            "layer": layer,
        }
    return overlays, gradcam_summary


def _masks(subset, size):
    from PIL import Image

    masks = []
    for path, mask_rel in zip(subset.paths, subset.extras["mask_path"]):
        root = Path(path).parents[2]
        mask = Image.open(root / mask_rel).resize((size, size), Image.NEAREST)
        masks.append(np.asarray(mask) > 0)
    return masks


def _write_report(
    out,
    image_set,
    train,
    val,
    test,
    source,
    path,
    notice,
    settings,
    result,
    metrics,
    roc,
    curves,
    overlays,
    gradcam_summary,
    seconds,
) -> Path:
    rel = lambda p: Path(p).relative_to(out).as_posix()
    names = metrics["class_names"]
    lines = ["# radtransfer demo: DenseNet121 on synthetic brain-tumour MRI", ""]
    if notice:
        lines += [f"> **{notice}**", ""]
    lines += [
        f"- Data: {len(image_set)} synthetic 16-bit MRI slices of {len(set(image_set.patient_ids))} patients, "
        f"classes {', '.join(image_set.class_names)}; split by patient into {len(train)} training, {len(val)} "
        f"validation and {len(test)} test images (no patient in two parts).",
        f"- Weights: {source or 'none (random initialisation)'}{f' — `{path}`' if path else ''}.",
        f"- Training: unfreeze_all, Adam, {settings['epochs']} epochs at {settings['image_size']}×"
        f"{settings['image_size']}, batch {settings['batch_size']}, the RadImageNet augmentation; best epoch "
        f"{result.best_epoch} (val_loss {result.best_val_loss:.4f}). Run folder: `run/`."
        + (
            " From scratch, BatchNorm momentum is 0.9 (Keras's 0.99 does not settle in so few steps)."
            if not path
            else ""
        ),
        f"- Time: {seconds:.0f} s.",
        "",
        "## Test metrics",
        "",
        "| metric | value |",
        "|---|---|",
        f"| AUC (macro one-vs-rest) | {metrics['auc']:.3f} ({describe_interval(metrics)}) |",
        f"| accuracy | {metrics['accuracy']:.3f} |",
        f"| balanced accuracy | {metrics['balanced_accuracy']:.3f} |",
        "",
        "| class | AUC | sensitivity | specificity |",
        "|---|---|---|---|",
    ]
    for name in names:
        lines.append(
            f"| {name} | {metrics['per_class_auc'][name]:.3f} | {metrics['sensitivity'][name]:.3f} | "
            f"{metrics['specificity'][name]:.3f} |"
        )
    lines += [
        "",
        "Confusion matrix (rows: true class, columns: predicted):",
        "",
        "| | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for name, row in zip(names, metrics["confusion_matrix"]):
        lines.append(f"| **{name}** | " + " | ".join(str(v) for v in row) + " |")
    lines += [
        "",
        "## ROC curves (test set)",
        "",
        f"![ROC curves]({rel(roc[0])})",
        "",
        "## Training curves",
        "",
        f"![Training curves]({rel(curves[0])})",
        "",
    ]
    if overlays:
        lines += [
            "## Grad-CAM",
            "",
            f"Heatmaps of layer `{gradcam_summary['layer']}` (the last one with at least a 6×6 grid at this "
            "input size). "
            f"Pointing game on {gradcam_summary['images']} test slices with a lesion: the heatmap's peak falls "
            f"inside the lesion mask in {gradcam_summary['pointing_game']:.0%} of them (a random point: "
            f"{gradcam_summary['random_point']:.0%}).",
            "",
        ]
        lines += [f"![Grad-CAM]({rel(p)})" for p in overlays]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
