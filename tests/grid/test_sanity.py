"""The frozen-backbone sanity check, on records written by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radtransfer.grid.sanity import frozen_sanity


def _records(aucs: dict) -> pd.DataFrame:
    rows = []
    for (source, strategy), values in aucs.items():
        for fold, auc in enumerate(values):
            rows.append(
                {"grid": "g", "source": source, "strategy": strategy, "status": "finished", "auc": auc, "fold": fold}
            )
    rows.append({"grid": "g", "source": "imagenet", "strategy": "freeze_all", "status": "failed", "auc": np.nan})
    return pd.DataFrame(rows)


def test_a_source_whose_frozen_runs_fall_to_chance_is_flagged_and_fine_tuning_does_not_hide_it():
    records = _records(
        {
            ("radimagenet", "freeze_all"): [0.82, 0.86, 0.84],
            ("imagenet", "freeze_all"): [0.52, 0.55, 0.50],
            ("imagenet", "unfreeze_all"): [0.90, 0.91, 0.89],  # fine-tuning recovers: not looked at
        }
    )
    table = frozen_sanity(records).set_index("source")
    assert table.loc["imagenet", "collapsed"] and not table.loc["radimagenet", "collapsed"]
    assert table.loc["imagenet", "frozen_auc"] == np.mean([0.52, 0.55, 0.50])  # the failed run does not count
    assert table.loc["imagenet", "frozen_runs"] == 3 and table.loc["imagenet", "best_other"] == np.mean(
        [0.82, 0.86, 0.84]
    )
    assert "another scale" in table.loc["imagenet", "message"] and table.loc["radimagenet", "message"] == ""


def test_a_small_gap_or_a_good_auc_is_not_a_collapse():
    close = frozen_sanity(_records({("a", "freeze_all"): [0.80], ("b", "freeze_all"): [0.70]}))
    assert not close["collapsed"].any()  # 0.10 apart
    high = frozen_sanity(_records({("a", "freeze_all"): [0.95], ("b", "freeze_all"): [0.75]}))
    assert not high["collapsed"].any()  # 0.20 apart, but 0.75 is no collapse
    alone = frozen_sanity(_records({("a", "freeze_all"): [0.5]}))
    assert not alone["collapsed"].any() and np.isnan(alone["best_other"].iloc[0])
