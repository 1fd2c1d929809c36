"""What the grid's figures and tables say (issue 30, item 11): the data drawn and the text set on the matplotlib
objects, checked against the record files read here and scikit-learn, never against the plotting code's own numbers.
A small hand-made grid: 3 sources × 2 scenarios × 2 folds × 2 repeats, 6 test images (3 patients) per fold."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from radtransfer import plots, protocol, report
from radtransfer.grid.records import GridSpec, RunRecord, run_dir

matplotlib.use("Agg")

SCENARIOS = [protocol.Scenario("resnet50", "freeze_all", 1e-3), protocol.Scenario("densenet121", "unfreeze_all", 1e-4)]
SOURCES = {"radimagenet": 0.3, "imagenet": 0.2, "random": 0.0}
FOLDS, REPEATS, PER_FOLD = 2, 2, 6


def _write_grid(root: Path) -> Path:
    grid = root / "task"
    grid.mkdir(parents=True)
    GridSpec(
        task="task",
        config={},
        sources=list(SOURCES),
        scenarios=[s.to_dict() for s in SCENARIOS],
        folds=FOLDS,
        faithful=False,
        bn="frozen",
        interpolation="bilinear",
        n_images=FOLDS * PER_FOLD,
        class_names=["a", "b"],
        repeats=REPEATS,
    ).write(grid)
    rng = np.random.default_rng(3)
    for fold in range(FOLDS):
        y = np.array([0, 1] * (PER_FOLD // 2))
        patients = np.array([f"f{fold}p{i // 2}" for i in range(PER_FOLD)])
        for repeat in range(REPEATS):
            for scenario in SCENARIOS:
                for source, strength in SOURCES.items():
                    scores = np.round(np.clip(strength * y + rng.uniform(0.2, 0.7, PER_FOLD), 0, 1), 3)
                    probabilities = np.stack([1 - scores, scores], 1)
                    folder = run_dir(grid, source, scenario.id, fold, repeat)
                    folder.mkdir(parents=True)
                    from sklearn.metrics import roc_auc_score

                    RunRecord(
                        run_id=f"{source}/{scenario.id}/fold{fold}-r{repeat}",
                        task="task",
                        source=source,
                        **scenario.to_dict(),
                        scenario=scenario.id,
                        fold=fold,
                        repeat=repeat,
                        metrics={"auc": float(roc_auc_score(y, scores)), "auc_ci": [None, None], "accuracy": 0.5},
                        best_val_loss=float(rng.uniform(0.3, 0.7)),
                        epochs_run=3,
                        best_epoch=2,
                    ).write(folder)
                    np.savez(folder / "predictions.npz", y_true=y, probabilities=probabilities, patient_ids=patients)
    return grid


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    return _write_grid(tmp_path_factory.mktemp("figures"))


def _keeping_figures(saved: dict):
    """A stand-in for ``Figure.savefig`` that keeps the figure instead of writing it (writing each as PNG and PDF
    took 9 s; tests/grid/test_protocol.py checks the files)."""

    def keeping(self, fname, *args, **kwargs):
        saved[Path(str(fname)).stem] = self

    return keeping


@pytest.fixture(scope="module")
def figures(grid, tmp_path_factory):
    """{file stem: Figure} of the grid's figures and of one run's training curves, the figure objects kept instead
    of saved (each made once for the module)."""
    saved = {}
    out = tmp_path_factory.mktemp("drawn")
    run = out / "run"
    run.mkdir()
    pd.DataFrame({"epoch": [1, 2, 3], "loss": [0.7, 0.6, 0.5], "val_loss": [0.7, 0.65, 0.66]}).to_csv(
        run / "history.csv", index=False
    )
    (run / "result.json").write_text(json.dumps({"best_epoch": 2}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", _keeping_figures(saved))
        plots.grid_figures(grid, out / "figures")
        plots.training_curves(run, out / "training_curves")
    return saved


def _records(grid) -> pd.DataFrame:
    """Every run's record, read here from its record.json."""
    rows = [json.loads(p.read_text()) for p in grid.rglob("record.json")]
    return pd.DataFrame([{**r, "auc": r["metrics"]["auc"]} for r in rows])


def _rgb(colour) -> tuple:
    return tuple(round(float(c), 3) for c in matplotlib.colors.to_rgba(colour)[:3])


def _colours_of(artist) -> set:
    """The colours an artist draws (alpha aside; white, the background, and invisible parts left out)."""
    found = []
    if isinstance(artist, matplotlib.lines.Line2D):
        if artist.get_linestyle() not in ("None", "none", "", " "):
            found.append(artist.get_color())
        if artist.get_marker() not in (None, "None", "none", "", " "):
            found += [artist.get_markerfacecolor(), artist.get_markeredgecolor()]
    elif isinstance(artist, matplotlib.collections.Collection):
        found += list(artist.get_facecolors()) + list(artist.get_edgecolors())
    elif isinstance(artist, matplotlib.patches.Patch):
        found += [artist.get_facecolor()] + ([artist.get_edgecolor()] if artist.get_linewidth() else [])
    colours = set()
    for colour in found:
        if isinstance(colour, str) and colour.lower() == "none":
            continue
        rgba = matplotlib.colors.to_rgba(colour)
        if rgba[3] > 0 and _rgb(rgba) != (1.0, 1.0, 1.0):
            colours.add(_rgb(rgba))
    return colours


def _unexplained_colours(fig) -> set:
    """Colours drawn in the figure's data axes that no legend of the figure shows (images with a colour bar, and
    colour bars, aside)."""
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    shown = set().union(*(_colours_of(h) for legend in legends for h in legend.legend_handles))
    drawn = set()
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        for artist in [*ax.lines, *ax.collections, *ax.patches]:
            drawn |= _colours_of(artist)
    return drawn - shown


def test_heatmap_panel_titles_do_not_overlap(grid, figures):
    """Three sources and an AUC below chance: the titles "<source>: mean AUC (axis below 0.5: some AUCs are below
    chance)" ran into one another."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figures["heatmap"]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    texts = [ax.title for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.get_title()]
    texts += [t for t in (fig._suptitle,) if t is not None]
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]) == len(SOURCES)
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (texts[i].get_text(), texts[j].get_text())
    # Nor a panel title over its neighbour's axes or colour bar.
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    for ax in panels:
        title = ax.title.get_window_extent(renderer)
        for other in fig.axes:
            if other is not ax:
                assert not title.overlaps(other.get_window_extent(renderer)), ax.get_title()


def test_auc_by_scenario_says_what_its_points_are_and_draws_their_spread(grid, figures):
    """Points were "mean over folds" (they are over folds × repeats), with no error bars."""
    fig = figures["auc_by_scenario"]
    ax = fig.axes[0]
    assert "2 folds × 2 repeats" in ax.get_ylabel() + ax.get_title()
    assert "SD" in ax.get_ylabel() + ax.get_title() + " ".join(t.get_text() for t in ax.get_legend().get_texts())
    records = _records(grid)
    expected = records.groupby(["source", "scenario"])["auc"].agg(["mean", "std", "size"])
    assert (expected["size"] == FOLDS * REPEATS).all()
    bars = [c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    assert len(bars) == len(SOURCES)
    ends, centres = [], []
    for container in bars:
        line, _, (segments,) = container
        centres += list(line.get_ydata())
        for (_, y0), (_, y1) in segments.get_segments():
            ends.append((y0, y1))
    ends = np.sort(np.array(ends), axis=1)
    want = np.sort(np.stack([expected["mean"] - expected["std"], expected["mean"] + expected["std"]], 1), axis=0)
    np.testing.assert_allclose(np.sort(ends, axis=0), want, atol=1e-9)
    np.testing.assert_allclose(sorted(centres), sorted(expected["mean"]), atol=1e-9)
    low, high = ax.get_ylim()
    assert low <= ends.min() and high >= ends.max()  # no bar clipped


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")  # the summary's, on random scores
def test_roc_legend_gives_n_and_the_summarys_auc(grid, figures):
    """The legend's AUC was the area under the averaged curve (0.834 beside the summary's 0.833), with no n."""
    from sklearn.metrics import roc_auc_score

    labels = [t.get_text() for t in figures["roc_curves"].axes[0].get_legend().get_texts()]
    summary = report.to_markdown(report.summarize(grid, mixed=False, n_boot=20))
    for source in SOURCES:
        per_run = []
        for path in grid.rglob("predictions.npz"):
            if f"/{source}/" in str(path):
                data = np.load(path)
                per_run.append((path.parent.parent.name, roc_auc_score(data["y_true"], data["probabilities"][:, 1])))
        frame = pd.DataFrame(per_run, columns=["scenario", "auc"])
        mean = frame.groupby("scenario")["auc"].mean().mean()  # folds and repeats averaged first, as the summary
        label = next(label for label in labels if label.startswith(source))
        assert f"AUC {mean:.3f}" in label and f"| {mean:.3f} |" in summary, (label, mean)
        assert f"{FOLDS * PER_FOLD} test images" in label and f"{FOLDS * 3} patients" in label, label
        assert f"{len(SCENARIOS) * FOLDS * REPEATS} runs" in label, label


def test_single_run_roc_legend_gives_n(tmp_path, monkeypatch):
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.stack([1 - np.linspace(0.1, 0.9, 6), np.linspace(0.1, 0.9, 6)], 1)
    saved = {}
    monkeypatch.setattr(Figure, "savefig", _keeping_figures(saved))
    patients = ["p1", "p1", "p2", "p2", "p3", "p3"]
    plots.roc_from_predictions(y, p, ["a", "b"], tmp_path / "roc", patient_ids=patients)
    legend = saved["roc"].axes[0].get_legend()
    assert "6 images" in legend.get_title().get_text() and "3 patients" in legend.get_title().get_text()


def test_pooled_reliability_counts_unique_images(grid, figures):
    """Pooling 8 runs of 2 folds' 6 images said "48 images": the same 12 images counted 4 times."""
    titles = [ax.get_title() for ax in figures["reliability"].axes]
    assert len(titles) == len(SOURCES)
    runs = len(SCENARIOS) * FOLDS * REPEATS
    for title in titles:
        assert f"{FOLDS * PER_FOLD} test images, {FOLDS * 3} patients" in title, title
        assert f"{runs} runs pooled" in title and f"{runs * PER_FOLD} predictions" in title, title
        assert f"{runs * PER_FOLD} images" not in title, title


def test_every_colour_drawn_has_a_legend_entry(grid, figures):
    """The grey line joining a scenario's sources, the box plot's orange medians and the training curves' best-epoch
    line were drawn in colours no legend named."""
    for name in ("auc_by_scenario", "roc_curves", "reliability", "training_curves"):
        assert _unexplained_colours(figures[name]) == set(), name


def test_tables_print_learning_rates_and_counts_as_what_they_are(grid):
    """A learning rate of 1e-4 printed as 0.000; counts with a missing value beside them printed as 12.000."""
    runs = report.load_records(grid).drop(columns=["path"])  # the report's runs table
    markdown = report.to_markdown(runs)
    header = markdown.splitlines()[0].strip("|").split(" | ")
    column = [c.strip() for c in header].index("learning_rate")
    shown = {line.strip("|").split(" | ")[column].strip() for line in markdown.splitlines()[2:]}
    assert shown == {"0.001", "0.0001"}
    frame = pd.DataFrame({"learning_rate": [1e-4, 3e-5], "repeat": [1.0, np.nan], "seconds": [12.0, 3.25]})
    assert report.to_markdown(frame).splitlines()[2:] == ["| 0.0001 | 1 | 12.000 |", "| 3e-05 | – | 3.250 |"]
    assert "0.0001" in report._to_latex(frame) and "1.000" not in report._to_latex(frame)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
def test_report_prints_a_summary_that_fits_80_columns(grid, tmp_path, monkeypatch, capsys):
    """`radtransfer report` printed the 43-column summary (and the comparisons) as markdown to the terminal."""
    from radtransfer.cli import main

    monkeypatch.setattr(Figure, "savefig", _keeping_figures({}))  # the figures' files are not what is tested
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(grid), "--formats", "md"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    folder = str(grid / "report")
    assert all(len(line) <= 80 for line in lines if folder not in line), [line for line in lines if len(line) > 80]
    assert not any(line.startswith("| ") for line in lines)  # no markdown table
    assert f"\n{folder}:\n" in out and "summary.md" in out and "heatmap.png" in out
    header = Path(folder, "summary.md").read_text().splitlines()[0]
    assert header.count(" | ") + 1 >= 38  # the wide table (38 columns; 45 with a TOST margin), in the file
    records = _records(grid)
    for source in SOURCES:
        mean = records[records["source"] == source].groupby("scenario")["auc"].mean()
        line = next(line for line in lines if line.strip().startswith(source))
        assert f"{mean.mean():.3f} ± {mean.std(ddof=1):.3f}" in line, line
        assert f"{len(records[records['source'] == source])}/{len(SCENARIOS) * FOLDS * REPEATS}" in line
