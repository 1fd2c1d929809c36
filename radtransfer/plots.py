"""Figures for a grid or a run (matplotlib, imported lazily; each figure saved as PNG and PDF)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .grid.records import GridResults, read_predictions
from .report import _fmt, scenario_means
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


def _test_sets(group, read) -> dict:
    """What a source's runs were tested on: ``runs`` (with predictions), ``predictions`` (their sum), ``images`` and
    ``patients`` (distinct: the runs of one fold, its scenarios and repeats, share that fold's test images, so each
    fold's images count once; ``patients`` None when a run kept no patient ids)."""
    runs = predictions = images = 0
    patients: set | None = set()
    seen_folds = set()
    for folder, fold in zip(group["path"], group["fold"] if "fold" in group else [0] * len(group)):
        data = read(folder)
        if data is None:
            continue
        runs += 1
        predictions += len(data["y_true"])
        if fold in seen_folds:
            continue
        seen_folds.add(fold)
        images += len(data["y_true"])
        ids = data.get("patient_ids")
        patients = None if patients is None or ids is None else patients | {(fold, str(p)) for p in ids}
    return {
        "runs": runs,
        "predictions": predictions,
        "images": images,
        "patients": None if patients is None else len({p for _, p in patients}),
    }


def _tested_on(counts: dict) -> str:
    """ "24 test images, 12 patients" (or "patients unknown")."""
    patients = "patients unknown" if counts["patients"] is None else f"{counts['patients']} patients"
    return f"{counts['images']} test images, {patients}"


def _mean_auc(records) -> float:
    """A source's mean AUC as the report's summary computes it (``mean_auc``: the mean over its scenarios of each
    scenario's mean over its valid runs)."""
    means = scenario_means(records)["auc"]
    return float(means.mean()) if len(means) else float("nan")


def _records_and_reader(records):
    """(records table, a run folder's predictions reader) of ``load_records``'s table or a ``GridResults`` (whose
    reader reads each run's predictions once)."""
    if isinstance(records, GridResults):
        return records.records, records.predictions
    return records, read_predictions


def roc_curves(records, path, n_boot: int = 200, seed: int = 0) -> list[str]:
    """Mean ROC curve per weight source over its runs (vertical averaging), with a 95% bootstrap band
    over runs. Two-class tasks use the positive class; more classes, the macro one-vs-rest curve. Each legend entry
    gives the source's mean AUC as the report's summary computes and prints it (``mean_auc``, 3 decimals; not the
    area under the averaged curve, which differs in the third decimal), its runs, and the distinct test images and
    patients they were tested on.

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
        counts = _test_sets(group, read)
        valid = int(np.isfinite(group["auc"].astype(float)).sum()) if "auc" in group else len(curves)
        runs = f"{valid} runs" if valid == len(curves) else f"{valid} runs (curve: {len(curves)} with predictions)"
        label = f"{source}: mean AUC {_fmt(_mean_auc(group))}, {runs}\n{_tested_on(counts)}"
        ax.plot(grid, mean, color=_color(source), label=label)
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


def roc_from_predictions(y_true, probabilities, class_names, path, patient_ids=None) -> list[str]:
    """ROC curves of one evaluation: the positive class for two classes, one-vs-rest per class for more; the
    legend's title gives n (images, and patients when ``patient_ids`` are given)."""
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
    patients = "" if patient_ids is None else f", {len(set(map(str, patient_ids)))} patients"
    ax.legend(loc="lower right", fontsize=8, title=f"n = {len(y_true)} images{patients}", title_fontsize=8)
    return _save(fig, path)


def reliability_diagram(metrics_or_bins, path, title: str | None = None) -> list[str]:
    """A reliability diagram: per confidence bin, the accuracy (bars) against the mean confidence (the gap shaded),
    the diagonal of perfect calibration, and each bin's image count; the ECE in the title.

    Args:
        metrics_or_bins: ``evaluate``'s metrics (its ``calibration_bins`` and ``ece``), a list of bins (dicts or
            ``CalibrationBin``), or a mapping of panel names to metrics, drawn side by side (e.g. an external
            site's ``{"development": ..., "recalibrated": ...}``). Metrics pooled over runs may carry ``pooled``
            (``_test_sets``'s counts): the panel then names the distinct images and the runs pooled, not the
            predictions as images.
        path: output path without suffix (a PNG and a PDF are written).
        title: the figure's title (default "Reliability diagram").

    Returns:
        The files written.
    """
    plt = _pyplot()
    panels = _reliability_panels(metrics_or_bins)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.6), squeeze=False)
    for ax, (name, bins, ece, pooled) in zip(axes[0], panels):
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
        if pooled:
            size = f"{int(counts.sum())} predictions:\n{_tested_on(pooled)}, {pooled['runs']} runs pooled"
        else:
            size = f"{int(counts.sum())} images"
        heading = ", ".join(part for part in (name, ece_text, size) if part)
        ax.set(xlabel="Confidence (largest probability)", ylabel="Accuracy", xlim=(0, 1), ylim=(0, 1), title=heading)
        ax.legend(loc="upper left", fontsize=7)
    fig.suptitle(title or "Reliability diagram")
    fig.tight_layout()
    return _save(fig, path)


def _reliability_panels(value) -> list:
    """[(panel name, bins as dicts, ECE or None, pooled counts or None)] from metrics, a list of bins, or
    {name: metrics}."""
    import dataclasses

    def bins_of(bins):
        return [dataclasses.asdict(b) if dataclasses.is_dataclass(b) else dict(b) for b in bins]

    if isinstance(value, dict) and "calibration_bins" in value:
        return [("", bins_of(value["calibration_bins"]), value.get("ece"), value.get("pooled"))]
    if isinstance(value, dict):
        panels = [
            (str(k), bins_of(m["calibration_bins"]), m.get("ece"), m.get("pooled"))
            for k, m in value.items()
            if m is not None
        ]
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
        return [("", bins, ece, None)]
    raise ValueError(
        "reliability_diagram takes evaluate's metrics (with calibration_bins), a list of calibration bins, or "
        f"{{panel name: metrics}}. Received: {type(value).__name__}"
    )


def _runs_per_scenario(records) -> tuple[object, str]:
    """Each (source, scenario)'s valid runs: their mean AUC, SD (ddof 1; NaN for one run) and count, and what a
    point is the mean of ("2 folds × 3 repeats", or "1 to 4 runs" where scenarios differ)."""
    from .report import _valid

    valid = _valid(records).assign(auc=lambda t: t["auc"].astype(float))
    if "repeat" not in valid:
        valid = valid.assign(repeat=0)
    table = valid.groupby(["source", "scenario"])["auc"].agg(["mean", "std", "size"]).reset_index()
    folds, repeats = valid["fold"].nunique(), valid["repeat"].nunique()
    sizes = table["size"]
    if len(sizes) and sizes.min() == sizes.max() == folds * repeats:
        what = f"{folds} {'fold' if folds == 1 else 'folds'} × {repeats} {'repeat' if repeats == 1 else 'repeats'}"
    else:
        what = f"{sizes.min()} to {sizes.max()} runs" if len(sizes) else "no runs"
    return table, what


def auc_by_scenario(records, path) -> list[str]:
    """Test AUC per scenario: each source's mean over the scenario's runs (its folds × repeats) with error bars of
    ±1 SD over those runs (a spread, not a confidence interval), a scenario's sources joined by a grey line; beside
    it, a box plot of the sources' scenario means. Every colour drawn is in a legend."""
    from matplotlib.lines import Line2D

    plt = _pyplot()
    table, what = _runs_per_scenario(records)
    scenarios = sorted(table["scenario"].unique())
    fig, (ax, box) = plt.subplots(
        1,
        2,
        figsize=(max(8, 0.45 * len(scenarios) + 5), 5.4),
        gridspec_kw={"width_ratios": [max(len(scenarios), 2), 4]},
        layout="constrained",
    )
    x = {s: i for i, s in enumerate(scenarios)}
    sources = sorted(table["source"].unique())
    offsets = {s: (i - (len(sources) - 1) / 2) * 0.2 for i, s in enumerate(sources)}
    pivot = table.pivot_table(index="scenario", columns="source", values="mean")
    joined = False
    for scenario, row in pivot.iterrows():
        present = [s for s in sources if np.isfinite(row.get(s, np.nan))]
        if len(present) > 1:
            ax.plot(
                [x[scenario] + offsets[s] for s in present],
                [row[s] for s in present],
                color="#999999",
                linewidth=0.8,
                zorder=1,
                label="_" if joined else "one scenario's sources",
            )
            joined = True
    for source in sources:
        group = table[table["source"] == source]
        ax.errorbar(
            [x[s] + offsets[source] for s in group["scenario"]],
            group["mean"],
            yerr=group["std"].fillna(0.0),
            fmt="o",
            markersize=4.5,
            color=_color(source),
            ecolor=_color(source),
            elinewidth=1,
            capsize=2,
            label=f"{source}: mean ± SD over runs",
            zorder=2,
        )
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels([s.replace("__", "\n") for s in scenarios], rotation=90, fontsize=6)
    spread = np.concatenate([table["mean"] - table["std"].fillna(0), table["mean"] + table["std"].fillna(0)])
    low, high, note = auc_axis(spread)
    top = max(high + 0.01, float(np.nanmax(spread)) + 0.01) if len(spread) else high + 0.01
    ax.set(
        ylabel=f"Test AUC: mean ± SD over {what}",
        title=f"AUC per scenario ({what} each){note}",
        ylim=(low, top),
    )
    ax.legend(fontsize=7)
    means = scenario_means(records)
    box.boxplot(
        [means[means["source"] == s]["auc"].dropna() for s in sources],
        tick_labels=sources,
        patch_artist=True,
        boxprops={"facecolor": "none", "edgecolor": "black"},
        medianprops={"color": "black"},
        flierprops={"markeredgecolor": "black"},
    )
    box.tick_params(axis="x", labelrotation=30)
    box.set(ylabel="Test AUC (scenario means)", title="Over scenarios", ylim=(low, top))
    box.legend(
        handles=[Line2D([], [], color="black", label="median; box: quartiles;\nwhiskers: 1.5 IQR")],
        fontsize=7,
        loc="lower right",
    )
    return _save(fig, path)


def heatmap(records, path) -> list[str]:
    """Mean AUC per backbone × strategy (each cell the mean over the scenario's runs), one panel per weight
    source; the panels laid out so that no title runs into another (constrained layout; the axis note is the
    figure's title, not each panel's)."""
    plt = _pyplot()
    means = scenario_means(records)
    sources = sorted(means["source"].unique())
    fig, axes = plt.subplots(1, len(sources), figsize=(4.8 * len(sources), 4.0), squeeze=False, layout="constrained")
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
        ax.set_title(source)
        fig.colorbar(image, ax=ax, label="AUC")
    fig.suptitle(f"Mean test AUC over each scenario's runs{note}")
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
    result = run_dir / RESULT
    best = json.loads(result.read_text()).get("best_epoch") if result.exists() else None
    for ax in axes:
        if best is not None and best >= 1:  # before the legend, so that the legend names it
            ax.axvline(best, color="grey", linestyle=":", label=f"best epoch ({best})")
        if ax.lines:
            ax.legend()
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
            panels[source] = {"ece": ece, "calibration_bins": bins, "pooled": _test_sets(group, read)}
    if not panels:
        return []
    return reliability_diagram(
        panels,
        path,
        title="Reliability by weight source (test predictions of its runs, pooled; bar labels: predictions per bin)",
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
