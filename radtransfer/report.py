"""Paper-style tables from a grid folder: means ± SD over scenarios, paired tests, the paper beside ours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# Mei et al., Radiology: AI 2022: RadImageNet's AUC gain over ImageNet per task (percentage points).
PAPER_IMPROVEMENTS = {
    "thyroid": 9.4, "breast": 4.0, "acl": 4.8, "meniscus": 4.5, "pneumonia": 1.9, "covid19": 6.1,
    "sars_cov_2": 1.7, "haemorrhage": 0.9,
}
_TASK_ALIASES = {
    "thyroid": "thyroid", "breast": "breast", "acl": "acl", "meniscus": "meniscus", "pneumonia": "pneumonia",
    "covid": "covid19", "covid19": "covid19", "covid_19": "covid19", "sars": "sars_cov_2", "sarscov2": "sars_cov_2",
    "sars_cov_2": "sars_cov_2", "hemorrhage": "haemorrhage", "haemorrhage": "haemorrhage", "ich": "haemorrhage",
}
SCENARIOS_PER_SOURCE = 24


def paper_task(task: str | None) -> str | None:
    """The paper's task a name refers to (e.g. "ACL-MRI" → "acl"), or None."""
    if not task:
        return None
    key = str(task).lower().replace("-", "_").replace(" ", "_")
    for alias in sorted(_TASK_ALIASES, key=len, reverse=True):
        if alias in key.replace("_", "") or alias in key:
            return _TASK_ALIASES[alias]
    return None


def load_records(out_dir):
    """One row per recorded run under ``out_dir`` (searched recursively, so a folder of grids works)."""
    import pandas as pd

    rows = []
    for path in sorted(Path(out_dir).rglob("record.json")):
        record = json.loads(path.read_text())
        metrics = record.get("metrics", {})
        ci = metrics.get("auc_ci") or (np.nan, np.nan)
        rows.append({
            "task": record.get("task"), "source": record["source"], "backbone": record["backbone"],
            "strategy": record["strategy"], "learning_rate": record["learning_rate"],
            "scenario": record.get("scenario"), "fold": record.get("fold", 0), "auc": metrics.get("auc"),
            "auc_low": ci[0], "auc_high": ci[1], "accuracy": metrics.get("accuracy"),
            "balanced_accuracy": metrics.get("balanced_accuracy"), "epochs_run": record.get("epochs_run"),
            "seconds": record.get("seconds"), "faithful": record.get("faithful"), "path": str(path.parent),
        })
    columns = ["task", "source", "backbone", "strategy", "learning_rate", "scenario", "fold", "auc", "auc_low",
               "auc_high", "accuracy", "balanced_accuracy", "epochs_run", "seconds", "faithful", "path"]
    return pd.DataFrame(rows, columns=columns)


def scenario_means(records):
    """Folds averaged first: one row per (task, source, scenario) with the mean AUC and n_folds."""
    keys = ["task", "source", "backbone", "strategy", "learning_rate", "scenario"]
    grouped = records.groupby(keys, dropna=False)
    table = grouped["auc"].mean().rename("auc").to_frame()
    table["n_folds"] = grouped["fold"].nunique()
    return table.reset_index()


def _mean_sd(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return np.nan, np.nan
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else np.nan


def paired_tests(a, b) -> dict:
    """Wilcoxon signed-rank and paired t test of a − b over matched pairs (scipy)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    result = {"n_pairs": int(len(a)), "wilcoxon_p": np.nan, "ttest_p": np.nan}
    if len(a) >= 2 and np.any(a != b):
        result["wilcoxon_p"] = float(stats.wilcoxon(a, b).pvalue)
        result["ttest_p"] = float(stats.ttest_rel(a, b).pvalue)
    return result


def summarize(out_dir, reference: str = "imagenet", candidate: str = "radimagenet"):
    """Per task and weight source: mean AUC ± SD over the scenarios (folds averaged first), how complete
    the grid is, and — on the candidate's rows — the difference from the reference source with paired
    Wilcoxon and t tests over the matched scenarios, and the paper's reported gain when the task is one
    of the paper's.

    Returns:
        A pandas DataFrame with columns task, source, n_runs, n_scenarios, complete, mean_auc, sd_auc,
        and (candidate rows) diff_vs_<reference>, n_pairs, wilcoxon_p, ttest_p, paper_gain.
    """
    import pandas as pd

    records = load_records(out_dir)
    columns = ["task", "source", "n_runs", "n_scenarios", "min_folds", "complete", "mean_auc", "sd_auc",
               f"diff_vs_{reference}", "n_pairs", "wilcoxon_p", "ttest_p", "paper_gain"]
    if records.empty:
        return pd.DataFrame(columns=columns)
    means = scenario_means(records)
    expected_folds = _expected_folds(out_dir)
    rows = []
    for (task, source), group in means.groupby(["task", "source"], dropna=False):
        mean, sd = _mean_sd(group["auc"])
        n_runs = int(((records["task"] == task) & (records["source"] == source)).sum())
        min_folds = int(group["n_folds"].min())
        row = {"task": task, "source": source, "n_runs": n_runs, "n_scenarios": len(group), "min_folds": min_folds,
               "complete": len(group) == SCENARIOS_PER_SOURCE and min_folds >= expected_folds.get(task, 1),
               "mean_auc": mean, "sd_auc": sd}
        if source == candidate:
            other = means[(means["task"] == task) & (means["source"] == reference)]
            paired = group.merge(other, on="scenario", suffixes=("", "_ref"))
            if len(paired):
                row[f"diff_vs_{reference}"] = float((paired["auc"] - paired["auc_ref"]).mean())
                row.update(paired_tests(paired["auc"], paired["auc_ref"]))
            paper = paper_task(task)
            row["paper_gain"] = PAPER_IMPROVEMENTS.get(paper) / 100 if paper else np.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def _expected_folds(out_dir) -> dict:
    expected = {}
    for path in Path(out_dir).rglob("grid.json"):
        grid = json.loads(path.read_text())
        expected[grid.get("task")] = grid.get("folds") or 1
    return expected


def breakdown(out_dir, by: str):
    """Mean AUC ± SD and scenario counts per task, source and ``by`` ("backbone" or "strategy")."""
    import pandas as pd

    means = scenario_means(load_records(out_dir))
    if means.empty:
        return pd.DataFrame(columns=["task", "source", by, "n_scenarios", "mean_auc", "sd_auc"])
    rows = []
    for (task, source, key), group in means.groupby(["task", "source", by], dropna=False):
        mean, sd = _mean_sd(group["auc"])
        rows.append({"task": task, "source": source, by: key, "n_scenarios": len(group), "mean_auc": mean, "sd_auc": sd})
    return pd.DataFrame(rows)


def _fmt(value, digits=3):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def to_markdown(frame) -> str:
    """A plain markdown table (no optional dependencies)."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    lines = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *lines])


def write(out_dir, formats=("md", "csv", "tex"), report_dir=None) -> dict:
    """Writes the summary and the per-backbone and per-strategy tables; returns the paths written.

    Args:
        out_dir: the grid folder.
        formats: any of "md", "csv", "tex".
        report_dir: where to write (default ``out_dir/report``).
    """
    report_dir = Path(report_dir or Path(out_dir) / "report")
    report_dir.mkdir(parents=True, exist_ok=True)
    tables = {"summary": summarize(out_dir), "by_backbone": breakdown(out_dir, "backbone"),
              "by_strategy": breakdown(out_dir, "strategy")}
    written = {}
    for name, frame in tables.items():
        for fmt in formats:
            path = report_dir / f"{name}.{fmt}"
            if fmt == "csv":
                frame.to_csv(path, index=False)
            elif fmt == "md":
                path.write_text(to_markdown(frame) + "\n")
            elif fmt == "tex":
                path.write_text(_to_latex(frame))
            else:
                raise ValueError(f"Unknown report format {fmt!r}; expected md, csv or tex.")
            written[f"{name}.{fmt}"] = str(path)
    return written


def _to_latex(frame) -> str:
    escape = lambda text: str(text).replace("_", r"\_").replace("%", r"\%")
    lines = [r"\begin{tabular}{" + "l" * len(frame.columns) + "}", r"\hline",
             " & ".join(escape(c) for c in frame.columns) + r" \\", r"\hline"]
    lines += [" & ".join(escape(_fmt(v)) for v in row) + r" \\" for row in frame.itertuples(index=False)]
    lines += [r"\hline", r"\end{tabular}", ""]
    return "\n".join(lines)
