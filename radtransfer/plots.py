"""Figures for a grid or a run (matplotlib, imported lazily; each figure saved as PNG and PDF)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .grid.records import GridResults, read_predictions
from .report import scenario_means
from .training.run_folder import HISTORY, RESULT

SOURCE_COLORS = {"radimagenet": "#c0392b", "imagenet": "#2471a3", "random": "#7f8c8d"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> list[str]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in (".png", ".pdf"):
        target = path.with_suffix(suffix)
        fig.savefig(target, dpi=150, bbox_inches="tight")
        written.append(str(target))
    _pyplot().close(fig)
    return written


def auc_axis(values) -> tuple[float, float, str]:
    """The AUC axis: always 0.5 (chance) to 1, so a figure never magnifies small differences by scaling to its
    data (an all-1.000 grid once drew a colour bar from 0.90 to 1.10); extended below 0.5, and said so, when an AUC
    is below chance."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    low = 0.5 if not len(finite) or finite.min() >= 0.5 else float(np.floor(finite.min() * 20) / 20)
    return low, 1.0, "" if low == 0.5 else " (axis below 0.5: some AUCs are below chance)"


def _color(source):
    return SOURCE_COLORS.get(source, "#555555")


def _records_and_reader(records):
    """(records table, a run folder's predictions reader) of ``load_records``'s table or a ``GridResults`` (whose
    reader reads each run's predictions once)."""
    if isinstance(records, GridResults):
        return records.records, records.predictions
    return records, read_predictions


def roc_curves(records, path, n_boot: int = 200, seed: int = 0) -> list[str]:
    """Mean ROC curve per weight source over its runs (vertical averaging), with a 95% bootstrap band
    over runs. Two-class tasks use the positive class; more classes, the macro one-vs-rest curve.

    Args:
        records: the DataFrame of ``report.load_records`` (each run's folder holds its test predictions), or a
            ``GridResults`` (its records; each run's predictions read once).
        path: output path without suffix.
    """
    from sklearn.metrics import roc_curve

    records, read = _records_and_reader(records)
    plt = _pyplot()
    grid = np.linspace(0, 1, 101)
    fig, ax = plt.subplots(figsize=(5, 5))
    rng = np.random.default_rng(seed)
    for source, group in records.groupby("source"):
        curves = []
        for folder in group["path"]:
            data = read(folder)
            if data is None:
                continue
            y, p = data["y_true"], data["probabilities"]
            classes = [1] if p.shape[1] == 2 else range(p.shape[1])
            tprs = []
            for c in classes:
                if 0 < (y == c).sum() < len(y):
                    fpr, tpr, _ = roc_curve(y == c, p[:, c])
                    tprs.append(np.interp(grid, fpr, tpr))
            if tprs:
                curves.append(np.mean(tprs, axis=0))
        if not curves:
            continue
        curves = np.array(curves)
        mean = curves.mean(axis=0)
        boots = np.array([curves[rng.integers(0, len(curves), len(curves))].mean(axis=0) for _ in range(n_boot)])
        low, high = np.percentile(boots, [2.5, 97.5], axis=0)
        auc = float(np.trapezoid(mean, grid)) if hasattr(np, "trapezoid") else float(np.trapz(mean, grid))
        ax.plot(grid, mean, color=_color(source), label=f"{source} (mean of {len(curves)} runs, AUC {auc:.3f})")
        ax.fill_between(grid, low, high, color=_color(source), alpha=0.2)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    ax.set(
        xlabel="False positive rate (1 − specificity)",
        ylabel="True positive rate (sensitivity)",
        title="ROC curves by weight source (95% bootstrap band)",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def roc_from_predictions(y_true, probabilities, class_names, path) -> list[str]:
    """ROC curves of one evaluation: the positive class for two classes, one-vs-rest per class for more."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    y_true = np.asarray(y_true)
    probabilities = np.asarray(probabilities)
    classes = [1] if probabilities.shape[1] == 2 else range(probabilities.shape[1])
    fig, ax = plt.subplots(figsize=(5, 5))
    styles = ["-", "--", "-.", ":"]
    for i, c in enumerate(classes):
        positives = y_true == c
        if 0 < positives.sum() < len(y_true):
            fpr, tpr, _ = roc_curve(positives, probabilities[:, c])
            auc = roc_auc_score(positives, probabilities[:, c])
            # Line styles and widths differ so that identical curves (e.g. two perfect ones) stay visible.
            ax.plot(
                fpr,
                tpr,
                linestyle=styles[i % len(styles)],
                linewidth=3.0 - 0.5 * (i % 4),
                label=f"{class_names[c]} (AUC {auc:.3f})",
            )
    ax.plot([0, 1], [0, 1], linestyle=(0, (1, 3)), color="grey", linewidth=1, label="chance")
    ax.set(
        xlabel="False positive rate (1 − specificity)",
        ylabel="True positive rate (sensitivity)",
        title="ROC curves, test set" + ("" if probabilities.shape[1] == 2 else " (one vs rest)"),
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def reliability_diagram(metrics_or_bins, path, title: str | None = None) -> list[str]:
    """A reliability diagram: per confidence bin, the accuracy (bars) against the mean confidence (the gap shaded),
    the diagonal of perfect calibration, and each bin's image count; the ECE in the title.

    Args:
        metrics_or_bins: ``evaluate``'s metrics (its ``calibration_bins`` and ``ece``), a list of bins (dicts or
            ``CalibrationBin``), or a mapping of panel names to metrics, drawn side by side (e.g. an external
            site's ``{"development": ..., "recalibrated": ...}``).
        path: output path without suffix (a PNG and a PDF are written).
        title: the figure's title (default "Reliability diagram").

    Returns:
        The files written.
    """
    plt = _pyplot()
    panels = _reliability_panels(metrics_or_bins)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.6), squeeze=False)
    for ax, (name, bins, ece) in zip(axes[0], panels):
        lower = np.array([b["lower"] for b in bins])
        width = np.array([b["upper"] for b in bins]) - lower
        counts = np.array([b["count"] for b in bins])
        accuracy = np.array([b["accuracy"] if b["count"] else 0.0 for b in bins], dtype=float)
        confidence = np.array([b["confidence"] if b["count"] else np.nan for b in bins], dtype=float)
        filled = counts > 0
        ax.bar(lower, accuracy, width=width, align="edge", color="#2471a3", edgecolor="white", label="accuracy")
        gap_low = np.minimum(accuracy, confidence)[filled]
        ax.bar(
            lower[filled],
            np.abs(confidence - accuracy)[filled],
            bottom=gap_low,
            width=width[filled],
            align="edge",
            color="#c0392b",
            alpha=0.35,
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
        for x, w, count in zip(lower[filled], width[filled], counts[filled]):
            ax.text(x + w / 2, 0.02, str(int(count)), ha="center", va="bottom", fontsize=6, rotation=90, color="white")
        ece_text = "" if ece is None else f"ECE {ece:.3f}"
        heading = ", ".join(part for part in (name, ece_text, f"{int(counts.sum())} images") if part)
        ax.set(xlabel="Confidence (largest probability)", ylabel="Accuracy", xlim=(0, 1), ylim=(0, 1), title=heading)
        ax.legend(loc="upper left", fontsize=7)
    fig.suptitle(title or "Reliability diagram")
    fig.tight_layout()
    return _save(fig, path)


def _reliability_panels(value) -> list:
    """[(panel name, bins as dicts, ECE or None)] from metrics, a list of bins, or {name: metrics}."""
    import dataclasses

    def bins_of(bins):
        return [dataclasses.asdict(b) if dataclasses.is_dataclass(b) else dict(b) for b in bins]

    if isinstance(value, dict) and "calibration_bins" in value:
        return [("", bins_of(value["calibration_bins"]), value.get("ece"))]
    if isinstance(value, dict):
        panels = [(str(k), bins_of(m["calibration_bins"]), m.get("ece")) for k, m in value.items() if m is not None]
        if panels:
            return panels
    elif isinstance(value, (list, tuple)) and value:
        bins = bins_of(value)
        total = sum(b["count"] for b in bins)
        ece = (
            sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])
            if total
            else None
        )
        return [("", bins, ece)]
    raise ValueError(
        "reliability_diagram takes evaluate's metrics (with calibration_bins), a list of calibration bins, or "
        f"{{panel name: metrics}}. Received: {type(value).__name__}"
    )


def auc_by_scenario(records, path) -> list[str]:
    """AUC per scenario (folds averaged), RadImageNet and ImageNet side by side, pairs joined by a line."""
    plt = _pyplot()
    means = scenario_means(records)
    scenarios = sorted(means["scenario"].unique())
    fig, (ax, box) = plt.subplots(
        1, 2, figsize=(max(8, 0.45 * len(scenarios) + 5), 5), gridspec_kw={"width_ratios": [max(len(scenarios), 2), 4]}
    )
    x = {s: i for i, s in enumerate(scenarios)}
    sources = sorted(means["source"].unique())
    offsets = {s: (i - (len(sources) - 1) / 2) * 0.2 for i, s in enumerate(sources)}
    pivot = means.pivot_table(index="scenario", columns="source", values="auc")
    for scenario, row in pivot.iterrows():
        present = [s for s in sources if np.isfinite(row.get(s, np.nan))]
        if len(present) > 1:
            ax.plot(
                [x[scenario] + offsets[s] for s in present],
                [row[s] for s in present],
                color="#999999",
                linewidth=0.8,
                zorder=1,
            )
    for source in sources:
        group = means[means["source"] == source]
        ax.scatter(
            [x[s] + offsets[source] for s in group["scenario"]],
            group["auc"],
            color=_color(source),
            label=source,
            zorder=2,
            s=22,
        )
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels([s.replace("__", "\n") for s in scenarios], rotation=90, fontsize=6)
    low, high, note = auc_axis(means["auc"])
    ax.set(ylabel="Test AUC (mean over folds)", title=f"AUC per scenario{note}", ylim=(low, high + 0.01))
    ax.legend(fontsize=8)
    box.boxplot([means[means["source"] == s]["auc"].dropna() for s in sources], tick_labels=sources)
    box.tick_params(axis="x", labelrotation=30)
    box.set(ylabel="Test AUC", title="Over scenarios", ylim=(low, high + 0.01))
    fig.tight_layout()
    return _save(fig, path)


def heatmap(records, path) -> list[str]:
    """Mean AUC per backbone × strategy, one panel per weight source."""
    plt = _pyplot()
    means = scenario_means(records)
    sources = sorted(means["source"].unique())
    fig, axes = plt.subplots(1, len(sources), figsize=(4.8 * len(sources), 3.8), squeeze=False)
    low, high, note = auc_axis(means["auc"])
    for ax, source in zip(axes[0], sources):
        table = means[means["source"] == source].pivot_table(index="backbone", columns="strategy", values="auc")
        image = ax.imshow(table.values, cmap="viridis", vmin=low, vmax=high, aspect="auto")
        ax.set_xticks(range(len(table.columns)))
        ax.set_xticklabels(table.columns, rotation=30, ha="right")
        ax.set_yticks(range(len(table.index)))
        ax.set_yticklabels(table.index)
        for i in range(table.shape[0]):
            for j in range(table.shape[1]):
                value = table.values[i, j]
                if np.isfinite(value):
                    bright = (value - low) / max(high - low, 1e-9) > 0.6  # viridis turns yellow: dark text
                    ax.text(
                        j, i, f"{value:.3f}", ha="center", va="center", fontsize=8, color="black" if bright else "white"
                    )
        ax.set_title(f"{source}: mean AUC{note}")
        fig.colorbar(image, ax=ax, label="AUC")
    fig.tight_layout()
    return _save(fig, path)


def training_curves(run_dir, path=None) -> list[str]:
    """Loss and AUC per epoch (training and validation) of one run folder (its history.csv)."""
    import pandas as pd

    plt = _pyplot()
    run_dir = Path(run_dir)
    history = pd.read_csv(run_dir / HISTORY).drop_duplicates("epoch", keep="last")
    epochs = history["epoch"]  # counted from 1, as the logs count
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in ((axes[0], "loss", "Loss"), (axes[1], "auc", "AUC")):
        if metric in history:
            ax.plot(epochs, history[metric], marker="o", label=f"training {metric}")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], marker="o", label=f"validation {metric}")
        ax.set(xlabel="Epoch", ylabel=label, title=f"{label} per epoch")
        ax.legend()
    result = run_dir / RESULT
    if result.exists():
        best = json.loads(result.read_text()).get("best_epoch")
        if best is not None and best >= 1:
            for ax in axes:
                ax.axvline(best, color="grey", linestyle=":", label="best epoch")
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    return _save(fig, path or run_dir / "training_curves")


def grid_figures(out_dir, figure_dir=None) -> list[str]:
    """All grid figures (ROC, AUC per scenario, heatmap) into ``out_dir/report``; for a folder of several grids,
    one sub-folder of figures per grid (named by its path), since runs of different grids are never pooled.
    ``out_dir``: a grid folder, a folder of grids, or their ``GridResults`` (the report's, to read the folder once)."""
    results = GridResults.of(out_dir)
    if results.records.empty:
        raise ValueError(f"No run records under '{results.folder}': run the grid first.")
    figure_dir = Path(figure_dir or results.folder / "report")
    grids = results.grids
    written = []
    for grid in grids:
        folder = figure_dir if len(grids) == 1 else figure_dir / grid.replace("/", "__")
        mine = results.grid(grid)
        written += roc_curves(mine, folder / "roc_curves")
        written += auc_by_scenario(mine.records, folder / "auc_by_scenario")
        written += heatmap(mine.records, folder / "heatmap")
        written += reliability_by_source(mine, folder / "reliability")
    return written


def reliability_by_source(records, path) -> list[str]:
    """One reliability diagram per weight source, side by side, of the test predictions of all its runs pooled
    (each run's ``predictions.npz``): how well the grid's probabilities are calibrated, source by source.

    Args:
        records: the DataFrame of ``report.load_records``, or a ``GridResults`` (its records; each run's
            predictions read once).
        path: output path without suffix.

    Returns:
        The files written (none when no run kept its predictions).
    """
    from .stats.calibration import expected_calibration_error

    records, read = _records_and_reader(records)
    panels = {}
    for source, group in records.groupby("source"):
        labels, probabilities = [], []
        for folder in group["path"]:
            data = read(folder)
            if data is not None:
                labels.append(data["y_true"])
                probabilities.append(data["probabilities"])
        if labels:
            ece, bins = expected_calibration_error(np.concatenate(labels), np.concatenate(probabilities))
            panels[f"{source} ({len(labels)} runs)"] = {"ece": ece, "calibration_bins": bins}
    if not panels:
        return []
    return reliability_diagram(
        panels, path, title="Reliability by weight source (test predictions of its runs, pooled)"
    )


def learning_curve(table, path) -> list[str]:
    """Test AUC against training-set size (mean training images over the splits, log scale), one line per
    weight source (and strategy, where a source ran several), with its 95% interval as a band.

    Args:
        table: the DataFrame of ``protocol.learning_curve`` (``grid.curve.curve_table``).
        path: output path without suffix.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    several = table.groupby("source")["strategy"].nunique().max() > 1 if len(table) else False
    styles = {"unfreeze_all": "-", "unfreeze_top10": "--", "freeze_all": ":"}
    for (source, strategy), group in table.groupby(["source", "strategy"], sort=False):
        group = group.sort_values("n_train_images")
        label = f"{source} ({strategy})" if several else source
        ax.plot(
            group["n_train_images"],
            group["auc"],
            marker="o",
            color=_color(source),
            linestyle=styles.get(strategy, "-"),
            label=label,
        )
        ax.fill_between(group["n_train_images"], group["auc_low"], group["auc_high"], color=_color(source), alpha=0.15)
    if len(table) and table["n_train_images"].nunique() > 1:
        ax.set_xscale("log")
    low, high, note = auc_axis(table["auc"] if len(table) else [])
    bands = table[["auc_low", "auc_high"]].to_numpy(dtype=float) if len(table) else np.empty((0, 2))
    bands = bands[np.isfinite(bands)]
    if len(bands):  # the axis holds every interval drawn (a t interval over few folds may pass 1 or fall below 0.5)
        if bands.min() < low:
            low = float(np.floor(bands.min() * 20) / 20)
            note = note or " (axis below 0.5: some intervals reach below chance)"
        high = max(high, float(np.ceil(bands.max() * 20) / 20))
    ax.set(
        xlabel="Training images (mean over splits)",
        ylabel="Test AUC (mean over runs)",
        title=f"Learning curve{note}",
        ylim=(low, high + 0.01),
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
