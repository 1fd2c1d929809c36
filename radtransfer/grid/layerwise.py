"""Layer-wise fine-tuning (Tajbakhsh et al., IEEE TMI 2016): unfreeze one more stage at a time, each depth trained
from fresh weights and scored on validation data. Like the grid, an experiment over many fine-tuning runs."""

from __future__ import annotations

import math
import time
from pathlib import Path

from ..evaluation.metrics import evaluate
from ..models.backbones import get_backbone
from ..models.classifier import get_backbone_model
from ..training.fine_tuning import fine_tune
from ..training.strategies import block_starts
from ..utils.io import write_text_atomic

TABLE = "layerwise"  # layerwise.csv and layerwise.md in the out folder
TIE_TOLERANCE = 1e-9  # validation AUCs this close to the best count as tied with it
TIE_RULE = (
    "the best validation AUC; among depths tied with it (within 1e-9), the fewest trainable parameters, then the "
    "shallowest depth"
)


def layerwise_search(
    build_fn,
    train,
    val,
    depths=None,
    *,
    learning_rate: float | None = None,
    epochs: int | None = None,
    out_dir=None,
    bootstrap: int = 0,
    config=None,
    log=None,
    **fine_tune_kwargs,
):
    """Trains from the pretrained weights with the head only, then the top 1, 2, … K stages, then all.

    Each depth starts from a fresh ``build_fn()`` (so from the pretrained weights), is fine-tuned with
    ``"freeze_all"`` (depth 0), ``"unfreeze_blocks:K"`` or ``"unfreeze_all"`` (depth "all"), and is scored
    on the validation set.

    Args:
        build_fn: a function of no arguments returning a model from ``build_model``.
        train, val: datasets or ImageSets, as for ``fine_tune``.
        depths: the depths to try (ints, and "all"); default 0 … number of stages, then "all".
        learning_rate, epochs: passed to ``fine_tune`` for every depth (default: ``config``'s, else 1e-4 and 10).
        out_dir: if given, each depth writes to ``out_dir/depth_<K>`` (and resumes there).
        bootstrap: bootstrap resamples for the validation AUC's interval (0: none).
        config: a ``TrainConfig`` for every depth (its strategy is replaced by each depth's).
        log: a stream for one line per depth as it ends (its validation AUC and time); None: silent.
        **fine_tune_kwargs: more arguments for ``fine_tune``.

    Returns:
        A pandas DataFrame with one row per depth: depth, strategy, trainable_params, val_auc, val_loss,
        epochs, seconds, best; sorted by depth. Exactly one row is ``best`` (none when no depth has a finite
        validation AUC), by ``TIE_RULE``: the best validation AUC, and among depths tied with it the fewest
        trainable parameters, then the shallowest.
    """
    import pandas as pd

    if depths is None:
        probe = build_fn()
        info = getattr(probe, "radtransfer_info", None)
        spec = get_backbone(info.backbone)
        depths = list(range(len(block_starts(get_backbone_model(probe), spec)) + 1)) + ["all"]
        del probe
    if learning_rate is None:
        learning_rate = config.learning_rate if config is not None else 1e-4
    if epochs is None:
        epochs = config.epochs if config is not None else 10
    rows = []
    for done, depth in enumerate(depths, 1):
        strategy = (
            "unfreeze_all" if depth == "all" else ("freeze_all" if depth == 0 else f"unfreeze_blocks:{int(depth)}")
        )
        model = build_fn()
        start = time.perf_counter()
        result = fine_tune(
            model,
            train,
            val,
            config,
            strategy=strategy,
            learning_rate=learning_rate,
            epochs=epochs,
            out_dir=None if out_dir is None else Path(out_dir) / f"depth_{depth}",
            **fine_tune_kwargs,
        )
        seconds = time.perf_counter() - start
        scores = evaluate(result.model, val, bootstrap=bootstrap)
        rows.append(
            {
                "depth": depth,
                "strategy": strategy,
                "trainable_params": result.trainable_params,
                "val_auc": scores["auc"],
                "val_loss": result.best_val_loss,
                "epochs": result.epochs_run,
                "seconds": seconds,
            }
        )
        if log is not None:
            auc = scores["auc"]
            shown = f"{auc:.3f}" if auc is not None and math.isfinite(auc) else "not defined"
            print(
                f"layerwise: depth {depth} ({strategy}, {result.trainable_params:,} trainable parameters): "
                f"validation AUC {shown} in {seconds:.0f} s; done {done}/{len(depths)}",
                file=log,
                flush=True,
            )
    return mark_best(pd.DataFrame(rows))


def mark_best(table):
    """The table with one ``best`` row by ``TIE_RULE`` (none if no validation AUC is finite)."""
    import numpy as np

    table = table.copy()
    auc = table["val_auc"].astype(float).to_numpy()
    table["best"] = False
    if not np.isfinite(auc).any():
        return table
    tied = np.isfinite(auc) & (auc >= np.nanmax(auc) - TIE_TOLERANCE)
    candidates = table[tied]
    order = candidates.assign(_position=range(len(candidates))).sort_values(
        ["trainable_params", "_position"], kind="stable"
    )
    table.loc[order.index[0], "best"] = True
    return table


def write_table(table, out_dir) -> list[str]:
    """Writes the search's table as ``layerwise.csv`` and ``layerwise.md`` (with the tie rule) in ``out_dir``;
    returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / f"{TABLE}.csv", out / f"{TABLE}.md"
    write_text_atomic(csv_path, table.to_csv(index=False))
    lines = [
        "| depth | strategy | trainable parameters | validation AUC | validation loss | epochs | seconds | best |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in table.itertuples():
        auc = f"{row.val_auc:.3f}" if math.isfinite(row.val_auc) else "not defined"
        loss = f"{row.val_loss:.4f}" if math.isfinite(row.val_loss) else "–"
        lines.append(
            f"| {row.depth} | {row.strategy} | {int(row.trainable_params):,} | {auc} | {loss} | {int(row.epochs)} | "
            f"{row.seconds:.0f} | {'best' if row.best else ''} |"
        )
    lines += ["", f"best: {TIE_RULE}."]
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    return [str(csv_path), str(md_path)]


def summary(table) -> str:
    """One line: the best depth, its validation AUC and trainable parameters, and how many depths tied with it."""
    best = table[table["best"]]
    if best.empty:
        return f"layerwise: {len(table)} depths, none with a validation AUC (a class missing from the validation set?)"
    row = best.iloc[0]
    auc = table["val_auc"].astype(float)
    tied = int((auc >= row["val_auc"] - TIE_TOLERANCE).sum())
    ties = f"; {tied} depths tied, the fewest trainable parameters kept" if tied > 1 else ""
    return (
        f"best depth {row['depth']} ({row['strategy']}): validation AUC {row['val_auc']:.3f}, "
        f"{int(row['trainable_params']):,} trainable parameters, of {len(table)} depths{ties}"
    )
