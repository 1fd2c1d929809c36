"""Grad-CAM (Selvaraju et al. 2017) for build_model models, with overlays and localisation scores."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from ..models.classifier import get_backbone_model, is_multi_label


def last_conv_layer(backbone, min_size: int | None = None) -> str:
    """The backbone's last layer with a spatial (4-D) output: its last convolutional activation.

    Args:
        min_size: if given, the last such layer whose output grid is at least min_size × min_size
            (finer heatmaps for small inputs, where the last activation is only 2×2 or 3×3).
    """
    for layer in reversed(backbone.layers):
        shape = layer.output.shape if getattr(layer, "output", None) is not None else None
        if shape is None or len(shape) != 4:
            continue
        if min_size is None or (shape[1] is not None and min(shape[1], shape[2]) >= min_size):
            return layer.name
    raise ValueError("The backbone has no layer with a spatial output of that size.")


def gradcam(model, images, layer: str | None = None, class_index=None, batch_size: int = 16, label=None) -> np.ndarray:
    """Grad-CAM heatmaps at the input resolution.

    Args:
        model: a model from ``build_model``.
        images: (N, H, W, C) images with values in [0, 255], as the model takes them.
        layer: a layer of the nested backbone (default: its last convolutional activation).
        class_index: the class to explain: None (each image's predicted class), an int, or one per image.
            The map explains that class's score before the softmax, as Selvaraju et al. define Grad-CAM.
        batch_size: images per gradient pass.
        label: for a multi-label model (``build_model(..., num_labels=K)``), the label to explain, by index or name:
            the gradient is taken of that sigmoid's logit (not with ``class_index``).

    Returns:
        (N, H, W) float32 heatmaps in [0, 1].
    """
    from .. import backend

    if label is not None:
        class_index = _label_index(model, label, class_index)
    backbone = get_backbone_model(model)
    layer = layer or last_conv_layer(backbone)
    try:
        target = backbone.get_layer(layer)
    except ValueError:
        raise ValueError(f"Layer {layer!r} is not in the backbone; e.g. {last_conv_layer(backbone)!r}.") from None
    features = keras.Model(backbone.inputs, [target.output, backbone.output])
    preprocess = model.get_layer("preprocess")
    head = model.get_layer("predictions")
    images = np.asarray(images)
    height, width = images.shape[1:3]
    kernel = keras.ops.convert_to_numpy(head.kernel).astype(np.float32)
    bias = keras.ops.convert_to_numpy(head.bias).astype(np.float32)
    maps = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        activations, pooled = (
            keras.ops.convert_to_numpy(t).astype(np.float32)
            for t in features(preprocess(keras.ops.convert_to_tensor(batch)), training=False)
        )
        # The class score before the softmax (Selvaraju et al.): the softmax saturates, and its gradient
        # vanishes, once the model is confident.
        logits = pooled @ kernel + bias
        if class_index is None:
            chosen = logits.argmax(axis=-1)
        else:
            wanted = np.asarray(class_index)
            chosen = np.full(len(batch), int(wanted)) if wanted.ndim == 0 else wanted[start : start + len(batch)]
        gradients = backend.class_score_gradients(
            features, preprocess, batch, kernel, bias, chosen, activations, pooled
        )
        weights = gradients.mean(axis=(1, 2), keepdims=True)
        cam = np.maximum((weights * activations).sum(axis=-1), 0.0)[..., None]
        cam = keras.ops.convert_to_numpy(keras.ops.image.resize(cam, (height, width), interpolation="bilinear"))[..., 0]
        peak = cam.max(axis=(1, 2), keepdims=True)
        maps.append(np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0))
    return np.concatenate(maps).astype(np.float32)


def _label_index(model, label, class_index) -> int:
    """The output index of a multi-label model's ``label`` (an index or a name), refusing it for a softmax model or
    beside ``class_index``."""
    if class_index is not None:
        raise ValueError("Pass label= (a multi-label model's label) or class_index=, not both.")
    if not is_multi_label(model):
        raise ValueError("label= is for a multi-label model (build_model(..., num_labels=K)); pass class_index= here.")
    names = list(getattr(model, "radtransfer_class_names", None) or [])
    count = int(model.output_shape[-1])
    if isinstance(label, str):
        if label not in names:
            raise ValueError(f"label={label!r} is not one of the model's labels {names}.")
        return names.index(label)
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < count:
        raise ValueError(f"Expected label= as a label name or an index in [0, {count}). Received: label={label!r}")
    return int(label)


def _dilate(mask, tolerance: int):
    if not tolerance:
        return mask
    from scipy import ndimage

    return ndimage.distance_transform_edt(~mask) <= tolerance


def pointing_game(heatmaps, masks, tolerance: int = 0) -> np.ndarray:
    """Whether each heatmap's peak falls inside its mask (within ``tolerance`` pixels, as Zhang et al.
    2016 allowed 15 px at 224 px input); NaN for an empty mask."""
    hits = []
    for heatmap, mask in zip(heatmaps, masks):
        mask = np.asarray(mask) > 0
        if not mask.any():
            hits.append(np.nan)
            continue
        index = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        hits.append(float(_dilate(mask, tolerance)[index]))
    return np.asarray(hits)


def iou_at_threshold(heatmaps, masks, threshold: float = 0.5) -> np.ndarray:
    """IoU of (heatmap ≥ threshold) with the mask; NaN for an empty mask."""
    scores = []
    for heatmap, mask in zip(heatmaps, masks):
        mask = np.asarray(mask) > 0
        if not mask.any():
            scores.append(np.nan)
            continue
        region = np.asarray(heatmap) >= threshold
        union = np.logical_or(region, mask).sum()
        scores.append(float(np.logical_and(region, mask).sum() / union) if union else 0.0)
    return np.asarray(scores)


def random_point_hit_rate(masks, tolerance: int = 0) -> float:
    """The pointing game's chance level: the mean share of the image each non-empty mask covers
    (dilated by ``tolerance`` pixels, to match ``pointing_game``)."""
    shares = [np.mean(_dilate(np.asarray(m) > 0, tolerance)) for m in masks if np.any(np.asarray(m) > 0)]
    return float(np.mean(shares)) if shares else float("nan")


def unique_names(paths) -> list[str]:
    """A file name for each path that no other path shares: the path below the paths' common folder, its folders
    joined by "__" ("a/x/img.png" and "b/x/img.png" become "a__x__img" and "b__x__img")."""
    import os
    from collections import Counter

    resolved = [Path(p).resolve() for p in paths]
    if len(resolved) == 1:
        return [resolved[0].stem]
    common = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    names = ["__".join(p.relative_to(common).with_suffix("").parts) for p in resolved]
    counts = Counter(names)
    repeated = {n for n, k in counts.items() if k > 1}  # "img.png" beside "img.jpg", or a path given twice
    names = [f"{n}_{p.suffix.lstrip('.')}" if n in repeated else n for n, p in zip(names, resolved)]
    seen: dict = {}
    for i, name in enumerate(names):
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            names[i] = f"{name}_{seen[name]}"
    return names


def run_test_metrics(run) -> dict | None:
    """The test metrics of the model at ``run`` (a run folder, or its ``best.keras``): the folder's
    test_metrics.json (``radtransfer train``), else its record.json's metrics (a grid run); None when it has none."""
    import json

    from ..training.run_folder import BEST_MODEL, TEST_METRICS

    path = Path(run)
    folder = path if path.is_dir() else path.parent if path.name == BEST_MODEL else None
    if folder is None:
        return None
    for name, key in ((TEST_METRICS, None), ("record.json", "metrics")):
        file = folder / name
        if file.is_file():
            values = json.loads(file.read_text())
            values = values.get(key) if key else values
            if isinstance(values, dict) and values.get("auc") is not None:
                return values
    return None


def performance_title(metrics: dict | None) -> tuple[str, str | None]:
    """What a Grad-CAM's title says of its model: its test AUC with the 95% interval (or "no interval", and why), and
    a warning when the AUC is at or below chance (0.5) or its interval reaches chance: a map of such a model shows
    where it looked, not a finding. Returns (the title line, the warning or None).

    Args:
        metrics: the run's test metrics (``run_test_metrics``), or None: "test performance unknown".
    """
    import math

    auc = None if not metrics else metrics.get("auc")
    if auc is None or not math.isfinite(float(auc)):
        return "model's test performance unknown: no test metrics beside it", (
            "the model's test performance is unknown (no test_metrics.json or record.json beside it): "
            "a Grad-CAM map shows where a model looked, not whether it can tell the classes apart"
        )
    auc = float(auc)
    low, high = (math.nan if v is None else float(v) for v in (metrics.get("auc_ci") or (None, None)))
    if math.isfinite(low) and math.isfinite(high):
        interval = f"95% CI {low:.3f}–{high:.3f}"
    else:
        count = metrics.get("n_patients") or metrics.get("n")
        unit = "patients" if metrics.get("n_patients") else "images"
        interval = f"no interval ({count} test {unit})" if count else "no interval"
    line = f"model test AUC {auc:.3f} ({interval})"
    if auc <= 0.5:
        warning = f"the model's test AUC {auc:.3f} is at or below chance: this map shows no learned finding"
        return f"{line}\nAT OR BELOW CHANCE: not a lesion map", warning
    if math.isfinite(low) and low <= 0.5:
        warning = f"the model's test AUC interval ({interval}) reaches chance: read this map as unconfirmed"
        return f"{line}\ninterval reaches chance: not a confirmed lesion map", warning
    return line, None


def save_overlays(images, heatmaps, out_dir, names=None, alpha: float = 0.45, titles=None) -> list[str]:
    """Writes one PNG per image: the image, and the heatmap over it (jet colour map, with a colour bar; a map
    that is zero everywhere is said to be empty instead)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index, (image, heatmap) in enumerate(zip(images, heatmaps)):
        name = names[index] if names is not None else f"gradcam_{index:03d}"
        image = np.asarray(image)
        gray = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
        fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
        axes[0].imshow(gray.astype(np.uint8), cmap="gray" if gray.ndim == 2 else None)
        axes[0].set_title("image")
        axes[1].imshow(gray.astype(np.uint8), cmap="gray" if gray.ndim == 2 else None)
        title = titles[index] if titles is not None else "Grad-CAM"
        if np.any(np.asarray(heatmap) > 0):
            shown = axes[1].imshow(heatmap, cmap="jet", alpha=alpha, vmin=0, vmax=1)
            fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04, label="relevance")
        else:  # no colour bar for a map that holds nothing: it would read as a map of low relevance
            title += "\nGrad-CAM empty: the class score rises with no region of this layer"
        axes[1].set_title(title)
        for ax in axes:
            ax.axis("off")
        path = out / f"{Path(str(name)).stem}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(str(path))
    return written
