"""Layer-wise fine-tuning (Tajbakhsh et al., IEEE TMI 2016): unfreeze one more stage at a time, each depth trained
from fresh weights and scored on validation data. Like the grid, an experiment over many fine-tuning runs."""

from __future__ import annotations

import time
from pathlib import Path

from ..evaluation.metrics import evaluate
from ..models.backbones import get_backbone
from ..models.classifier import get_backbone_model
from ..training.fine_tuning import fine_tune
from ..training.strategies import block_starts


def layerwise_search(
    build_fn,
    train,
    val,
    depths=None,
    *,
    learning_rate: float = 1e-4,
    epochs: int = 10,
    out_dir=None,
    bootstrap: int = 0,
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
        learning_rate, epochs: passed to ``fine_tune`` for every depth.
        out_dir: if given, each depth writes to ``out_dir/depth_<K>`` (and resumes there).
        bootstrap: bootstrap resamples for the validation AUC's interval (0: none).
        **fine_tune_kwargs: more arguments for ``fine_tune``.

    Returns:
        A pandas DataFrame with one row per depth: depth, strategy, trainable_params, val_auc, val_loss,
        epochs, seconds; sorted by depth, with the best validation AUC marked in ``best``.
    """
    import pandas as pd

    if depths is None:
        probe = build_fn()
        info = getattr(probe, "radtransfer_info", None)
        spec = get_backbone(info.backbone)
        depths = list(range(len(block_starts(get_backbone_model(probe), spec)) + 1)) + ["all"]
        del probe
    rows = []
    for depth in depths:
        strategy = (
            "unfreeze_all" if depth == "all" else ("freeze_all" if depth == 0 else f"unfreeze_blocks:{int(depth)}")
        )
        model = build_fn()
        start = time.perf_counter()
        result = fine_tune(
            model,
            train,
            val,
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
    table = pd.DataFrame(rows)
    table["best"] = table["val_auc"] == table["val_auc"].max()
    return table
