"""The RadImageNet comparison, run: ``run_grid`` trains and records every (weight source, scenario, fold) run of
the paper's grid on any image set, resumably, on one machine, many shards or a Ray cluster.

The paper itself (settings, scenarios, tasks) is data in ``grid.paper``; the plan of runs, their execution,
claims, progress, records and pairs are the other modules of ``grid/``. This module wires them and re-exports
the names users reach as ``protocol.*``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .data.adapters import require_image_set
from .data.audit import AUDIT_FILE, audit_splits
from .data.confounders import Marker
from .data.failures import check_images
from .data.fingerprint import data_manifest, manifest_digest
from .errors import DataSourceError, GridRunsFailedError, WeightsNotFoundError
from .grid import curve as grid_curve
from .grid import runs as grid_runs
from .grid import shortcut as grid_shortcut
from .grid.arms import parse_arm, with_preprocessings
from .grid.claims import new_token
from .grid.executors import RayExecutor, resolve_executor
from .grid.options import RAY_OPTIONS, CurveOptions, GridOptions
from .grid.pairs import compare_runs
from .grid.paper import (
    BACKBONE_ORDER,
    PAPER_TASKS,
    RADIMAGENET,
    STRATEGY_RATES,
    ProtocolConfig,
    Scenario,
    radimagenet_scenarios,
    with_image_sizes,
)
from .grid.paper import paper_task as match_paper_task
from .grid.plan import Run, parse_shard, plan_runs, resolve_shard, run_seed
from .grid.progress import GridProgress
from .grid.progress import summary as grid_summary
from .grid.records import RECORD_FILE, GridSpec, check_same_grid, load_records, write_data_manifest
from .grid.runs import GridJob
from .models.backbones import get_backbone
from .models.weights import find_foundation_preset, resolve_weights

__all__ = [
    "BACKBONE_ORDER",
    "CurveOptions",
    "GridOptions",
    "GridRunsFailedError",
    "PAPER_TASKS",
    "RADIMAGENET",
    "STRATEGY_RATES",
    "ProtocolConfig",
    "RayExecutor",
    "Run",
    "Scenario",
    "compare_runs",
    "learning_curve",
    "parse_shard",
    "plan_runs",
    "radimagenet_scenarios",
    "run_grid",
    "run_seed",
    "shortcut_test",
    "with_image_sizes",
    "with_preprocessings",
]


def _audit(splits, out: Path, mode: str, verbose: int, log) -> None:
    """The data audit of the grid's own splits (so it audits exactly the parts the runs will see)."""
    if mode == "off":
        return
    report = audit_splits(splits)
    report.write_json(out / AUDIT_FILE)
    if verbose:
        print(f"data audit: {report.summary()} ({out / AUDIT_FILE})", file=log or sys.stderr, flush=True)
        for line in report.finding_lines(max_rows=10) if report.errors else ():
            print(line, file=log or sys.stderr)
    if mode == "strict":
        report.raise_if_errors("the grid's folds", out / AUDIT_FILE)


def run_grid(
    image_set,
    out_dir,
    options: GridOptions | None = None,
    *,
    config: ProtocolConfig = RADIMAGENET,
    scenarios=None,
    **keywords,
):
    """Runs (or resumes) the RadImageNet grid on an image set and records every run.

    Every run is a pure function of (grid seed, scenario, fold, repeat, weight source): its record is the same
    whether the grid runs whole, in shards, on Ray, or with restarts, and a scenario's runs from different
    weight sources (of one repeat) see the same split, batches, augmentation, dropout and head initialisation.

    Several processes may fill one out_dir at once (shards, job-array tasks, one process per GPU, Ray
    workers): a run's folder is claimed before the run is trained, so no run is trained or recorded twice,
    and a run whose process died is taken over and resumed from its last finished epoch.

    The options come as one ``GridOptions`` or as its fields' keywords (``run_grid(images, out, folds=5)`` is
    ``run_grid(images, out, GridOptions(folds=5))``; keywords given with ``options`` replace its fields).

    Args:
        image_set: the task's images (an ImageSet with patient ids, ideally).
        out_dir: the grid folder; records go to ``out_dir/runs/<source>/<scenario>/fold<k>/record.json``.
        options: a ``GridOptions`` (default: its defaults), checked when it is made.
        config: the protocol settings (``RADIMAGENET`` or a copy with changes).
        scenarios: the scenarios to run (default: the 24 of ``radimagenet_scenarios()``).
        **keywords: ``GridOptions`` fields:

            sources: weight sources to compare (the first is the candidate of the paired comparisons); None,
                "none" or "random" is random initialisation (recorded as "random"; only its unfreeze_all runs).
                A source may carry the preprocessing its runs are fed, as an arm of its own (``grid.arms``):
                "imagenet@faithful" (the reference scripts' input, whatever the weights expect) or
                "imagenet@corrected" (the weights' own normalization); a bare source is fed the grid's
                (``faithful``). ``with_preprocessings(sources)`` lists both arms of every source, so one grid
                tests the reference's preprocessing against the corrected one on the same seeds.
                "<encoder>:<preset>" (``dinov2:dinov2_small``, or a preset folder's name in the weight folders) trains
                that foundation encoder in place of each scenario's backbone, paired with the other sources on the
                same split and seed (docs/reproduce.md, "Foundation encoders in a grid").
            folds: None (use ``config.folds``; None there means the 75/10/15 split), or k.
            repeats: runs per (source, scenario, fold), each with its own seed (``run_seed(..., repeat)``) and
                the fold's split; repeat r of every source shares that seed, so the sources stay paired per
                repeat. Repeat 0 is the run of a grid without repeats (its seed, its folder ``fold<k>``);
                repeat r ≥ 1 goes to ``fold<k>-r<r>``. Restarting a grid with more repeats adds the new runs;
                with fewer, its records are kept (grid.json keeps the most repeats asked for).
            shard: "k/n" to run a disjoint, stable share of the runs (n machines can fill one out_dir), or
                "auto": the share of this SLURM array task (``$SLURM_ARRAY_TASK_ID``) or Kubernetes Indexed
                Job pod (``$JOB_COMPLETION_INDEX``, with ``shard_count``).
            shard_count: the number of shards for shard="auto" where the environment does not say it.
            executor: "sequential" (one run after another in this process), "ray" (each run a Ray task on the
                cluster of ``$RAY_ADDRESS``, or on this machine: one run per GPU), or a ``RayExecutor`` with
                its address and resources per run. Ray needs ``pip install 'radtransfer[ray]'``.
            address, gpus_per_run, cpus_per_run: with executor="ray", the ``RayExecutor``'s.
            weights_dir: a folder searched first for weight files.
            faithful: reproduce the reference where radtransfer's defaults differ: "radimagenet"
                preprocessing also for ImageNet weights, nearest-neighbour resizing, BatchNorm following the
                layer flags. The default gives each source its own preprocessing, resizes bilinearly and
                freezes BatchNorm statistics.
            task: a task name stored with every record; default: the out_dir's name.
            paper_task: the paper's task to compare with in the report ("thyroid", "breast", "acl",
                "meniscus", "pneumonia", "covid19", "sars_cov_2", "haemorrhage"), None for none, or "auto":
                the task name if one of its words names a paper task.
            verbose: 0 silent; 1 progress per run and, in this process (not on Ray), each epoch's short line and
                a heartbeat every 10 s inside a long epoch, named by the run, in ``log``; 2 fine_tune's own lines
                (every metric, on stdout) instead.
            log: where progress is printed (default stderr).
            on_bad: "raise" (default: unreadable files stop the grid before anything is trained, listed) or
                "skip" (they are left out before the data is split, listed in the progress and in grid.json).
            audit: "warn" (default: the data audit of every fold's parts is written to ``out_dir/audit.json``
                and its summary printed), "strict" (its errors, such as a patient or a duplicate image in two
                parts, refuse the grid before anything is trained) or "off".
            train_fraction: train on this share of each split's training patients only (in (0, 1]; drawn by
                ``ImageSet.nested_subset`` with the grid's seed, so the shares of one data set are nested);
                the validation and test parts stay whole. ``learning_curve`` runs one grid per share.
            image_sizes: run every scenario at each of these input sizes (``with_image_sizes``; a scenario may also
                carry its own ``image_size``): each run builds its model and reads its images at its size, and a
                scenario's runs of one source, fold and repeat share the split and the seed at every size, so their
                difference is paired (``report.resolution_effects``). Runs at ``config.image_size`` are the grid's
                plain runs (their folders and records as without sizes); other sizes go to ``<scenario>__px<size>``.

    The grid folder is bound to its data: ``data.csv`` lists every image (path, class, patient, sha256 of
    the file) and grid.json its digest. Restarting on data that differs in any of them is refused, naming
    what changed, so records made on other data are never mixed in.

    Returns:
        A pandas DataFrame with one row per recorded run of this grid (all shards).

    Raises:
        TypeError: a keyword that is not a ``GridOptions`` field.
        ValueError: an option's value (one line naming it).
    """
    options = GridOptions.build(options, keywords, "run_grid")
    require_image_set(image_set, "image_set", "run_grid")
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    task = options.task or out.name
    scenarios = _sized(list(scenarios) if scenarios is not None else radimagenet_scenarios(), options, config)
    n_folds = options.folds if options.folds is not None else config.folds
    resolved_shard = resolve_shard(options.shard, options.shard_count)
    runs = plan_runs(options.sources, scenarios, n_folds or 1, resolved_shard, repeats=options.repeats)
    runner = _executor(options)
    weights = _find_weights(runs, options.weights_dir)
    image_set, skipped = check_images(image_set, options.on_bad)
    manifest = data_manifest(image_set)
    spec = _grid_spec(image_set, manifest, skipped, out, task, config, scenarios, n_folds, options)
    check_same_grid(out, spec, manifest)
    write_data_manifest(out, manifest)
    spec.write(out)

    splits = grid_splits(image_set, config, n_folds, options.train_fraction)
    _audit(splits, out, options.audit, options.verbose, options.log)
    job = GridJob(out, spec, config, splits, weights, options.faithful, spec.interpolation, spec.bn, options.verbose)
    todo = [r for r in runs if not (job.run_dir(r) / RECORD_FILE).exists()]
    share = "grid"
    if resolved_shard:
        share = f"shard {resolved_shard}" + (f" (from {options.shard!r})" if options.shard == "auto" else "")
    token = new_token()
    try:
        progress = GridProgress(
            task,
            todo,
            done_before=len(runs) - len(todo),
            total=len(runs),
            parallel=runner.parallelism() if todo else 1,
            log=options.log,
            verbose=options.verbose,
        )
        outcomes = runner.run(job, todo, progress, token) if todo else []
        _wait_for_held_runs(job, runner, outcomes, {r.id: r for r in todo}, progress, token)
    finally:
        runner.close()
    records = load_records(out)
    progress.say(f"done {progress.done}/{len(runs)} runs of this {share}; {grid_summary(records)}")
    return records


def _sized(scenarios, options: GridOptions, config: ProtocolConfig) -> list:
    """The grid's scenarios at each of ``options.image_sizes`` (``with_image_sizes``); a scenario at the grid's own
    ``config.image_size`` is the scenario without a size (its id, folder and record those of a grid without sizes)."""
    if options.image_sizes:
        scenarios = with_image_sizes(scenarios, options.image_sizes)
    plain = [replace(s, image_size=None) if s.image_size == config.image_size else s for s in scenarios]
    return list(dict.fromkeys(plain))


def _executor(options: GridOptions):
    """The executor of the options: a ``RayExecutor`` with their Ray options for executor="ray", else as given."""
    if options.executor == "ray":
        return RayExecutor(**{name: getattr(options, name) for name in RAY_OPTIONS})
    return resolve_executor(options.executor)


def _find_weights(runs, weights_dir) -> dict:
    """Every weight file the share needs, by (source, backbone), found before anything is trained."""
    weights, missing = {}, []
    # A foundation arm's preset serves every scenario's cell (its encoder replaces the CNN): one key, (source, None).
    keys = {(r.source, None if parse_arm(r.source).encoder else r.scenario.backbone) for r in runs}
    for source, backbone in sorted(keys, key=str):
        arm = parse_arm(source)
        try:
            if arm.is_random:
                weights[(source, backbone)] = None
            elif arm.encoder:  # the preset's folder, or its name for keras-hub to download
                found = find_foundation_preset(arm.encoder, arm.preset, weights_dir)
                weights[(source, None)] = arm.preset if found.path is None else Path(found.path).resolve()
            else:
                weights[(source, backbone)] = Path(resolve_weights(backbone, arm.source, weights_dir).path).resolve()
        except FileNotFoundError as exc:
            missing.append(str(exc))
    if missing:
        raise WeightsNotFoundError("The grid needs weight files that were not found:\n" + "\n".join(missing))
    return weights


def _grid_spec(image_set, manifest, skipped, out: Path, task, config, scenarios, n_folds, options) -> GridSpec:
    """The grid's grid.json: its settings, its data's digest, and the most repeats asked for."""
    paper_task = options.paper_task
    return GridSpec(
        task=task,
        config=config.to_dict(),
        sources=list(options.sources),
        folds=n_folds,
        scenarios=[s.to_dict() for s in scenarios],
        faithful=options.faithful,
        bn="protocol" if options.faithful else "frozen",
        interpolation="nearest" if options.faithful else "bilinear",
        n_images=len(image_set),
        class_names=list(image_set.class_names),
        paper_task=match_paper_task(task) if paper_task == "auto" else paper_task,
        data={
            "n_images": len(image_set),
            "sha256": manifest_digest(manifest),
            "skipped": [list(entry) for entry in skipped],
        },
        repeats=max(options.repeats, _stored_repeats(out)),
        train_fraction=float(options.train_fraction),
    )


def grid_splits(image_set, config: ProtocolConfig, n_folds: int | None, train_fraction: float = 1.0) -> list:
    """A grid's (train, val, test) parts: k folds, or the one split; with ``train_fraction`` < 1 each training part
    is cut to its nested share of patients (``ImageSet.nested_subset``, the grid's seed), val and test kept."""
    splits = (
        list(image_set.kfold(n_folds, seed=config.seed, val=config.val))
        if n_folds
        else [image_set.split(val=config.val, test=config.test, seed=config.seed)]
    )
    for index, (_, _, test) in enumerate(splits):
        present = sorted({int(label) for label in test.labels})
        if len(test) and len(present) < 2:  # no AUC on it: every run of the fold would fail at its test
            where = f"Fold {index}'s test part" if n_folds else "The test part"
            cure = "use fewer folds (--folds)" if n_folds else "use a larger test share (--test)"
            raise DataSourceError(
                f"{where} holds only class {test.class_names[present[0]]!r} ({len(test)} images), so no test AUC: "
                f"a class has too few patients to reach every test part; {cure} or give more patients of each class."
            )
    if train_fraction < 1:
        splits = [(train.nested_subset(train_fraction, seed=config.seed), val, test) for train, val, test in splits]
    return splits


def learning_curve(
    image_set,
    out_dir,
    options: CurveOptions | None = None,
    *,
    config: ProtocolConfig = RADIMAGENET,
    **keywords,
):
    """Test AUC against training-set size per weight source (Tajbakhsh et al. 2016): full training from random
    initialisation against fine-tuning, on nested shares of the training patients.

    Each share f runs one grid (``run_grid(..., train_fraction=f)``) in ``out_dir/fraction<f>/``: the same
    split (or folds) for every share, so validation and test stay the same, and training on the first
    ``ceil(f × n)`` training patients of one seeded order per class, so each share's patients contain every
    smaller share's. Each grid is resumable, shardable and Ray-able as any grid; a restart trains only what is
    missing. Then the table (``learning_curve.csv`` and ``.md``) and the figure (``learning_curve.png`` and
    ``.pdf``) are written in ``out_dir``, from all shards' records.

    Args:
        image_set: the task's images (an ImageSet with patient ids, ideally).
        out_dir: the curve's folder.
        options: a ``CurveOptions`` (default: its defaults); its fields may come as keywords instead, as in
            ``run_grid``.
        config: the protocol settings (epochs, image size, batch size, seed, ...).
        **keywords: ``CurveOptions`` fields: those of ``run_grid``'s ``GridOptions`` but ``paper_task`` and
            ``train_fraction`` (sources, folds, repeats, shard, shard_count, executor and its Ray options,
            weights_dir, faithful, task, verbose, log, on_bad, audit), and

            fractions: the shares of the training patients, in (0, 1] and increasing.
            sources: weight sources (default radimagenet, imagenet and None); None (or "none", "random") is
                random initialisation, which trains every layer (with a ``strategy`` other than unfreeze_all,
                the curve adds the unfreeze_all scenario, which the pretrained sources run too, so full
                training is compared with fine-tuning of the whole network as well).
            backbone: the network.
            strategy: the pretrained sources' strategy (default unfreeze_all: fine-tuning every layer).
            learning_rate: default: the paper's first rate for the strategy.

    Returns:
        The table (a pandas DataFrame): one row per (source, strategy, fraction) with the mean training images
        and patients over the splits, the number of runs, the mean test AUC and its 95% interval. The paired
        difference of each pretrained source minus random initialisation per share, with its interval
        (``grid.curve.curve_effects``), is written beside it (``learning_curve_effects.csv`` and ``.md``) and
        shown in ``learning_curve.md``.
    """
    from .plots import learning_curve as plot_curve

    options = CurveOptions.build(options, keywords, "learning_curve")
    require_image_set(image_set, "image_set", "learning_curve")
    out = Path(out_dir).expanduser().resolve()
    name = get_backbone(options.backbone).name
    rates = dict(STRATEGY_RATES)
    rate = options.learning_rate if options.learning_rate is not None else rates[options.strategy][0]
    scenarios = [Scenario(name, options.strategy, rate)]
    if any(parse_arm(s).is_random for s in options.sources) and options.strategy != "unfreeze_all":
        scenarios.append(Scenario(name, "unfreeze_all", rates["unfreeze_all"][0]))
    out.mkdir(parents=True, exist_ok=True)
    folds = options.folds if options.folds is not None else config.folds
    grid_curve.write_curve(out, {f: _train_sizes(grid_splits(image_set, config, folds, f)) for f in options.fractions})
    shared = {**options.shared(), "task": options.task or out.name}
    for fraction in options.fractions:
        if options.verbose:
            print(f"learning curve: fraction {fraction:g} of the training patients", file=options.log or sys.stderr)
        grid_options = GridOptions(**shared, paper_task=None, train_fraction=fraction)
        run_grid(image_set, grid_curve.fraction_dir(out, fraction), grid_options, config=config, scenarios=scenarios)
    table = grid_curve.curve_table(out)
    effects = grid_curve.curve_effects(out, seed=config.seed)
    grid_curve.write_table(table, out, effects)
    if len(table):
        plot_curve(table, out / grid_curve.FIGURE)
    return table


def shortcut_test(
    image_set,
    out_dir,
    options: GridOptions | None = None,
    *,
    config: ProtocolConfig = RADIMAGENET,
    scenarios=None,
    share: float = 1.0,
    marker: Marker | None = None,
    **keywords,
):
    """The shortcut test per weight source (Juodelyte et al. 2024): does a model learn a confounder that goes with
    the label? Equal test AUCs can hide one that does.

    A marker (``data.Marker``: by default a white square, 15% of the shorter side, top left) is drawn on ``share``
    of the positive images (``data.plant_marker``, seeded by ``config.seed``), so train, val and test carry it with
    the label; the grid runs on these images as ``run_grid`` runs any (resumable, shardable, Ray-able, bound to its
    data). Then every recorded run's best model is scored on its fold's test images without the marker (clean) and
    with it on every negative image instead (reversed), and the table is written: ``shortcut.csv`` and
    ``shortcut.md`` (per source × scenario) and ``shortcut_runs.csv`` (per run), in ``out_dir``. Each run's three
    versions' probabilities are kept in its folder (``shortcut.npz``), so a restart scores only new runs.

    The images are decoded into memory (files by the NumPy path's reader, at their stored size), with the marker
    drawn before resizing. The grid's augmentation (flips, rotations) moves the marker with the image.

    Args:
        image_set: a two-class ImageSet (files or in-memory), with patient ids ideally.
        out_dir: the grid folder (the grid's records, and the tables).
        options: a ``GridOptions``; its fields may come as keywords instead, as in ``run_grid`` (sources, folds,
            repeats, shard, executor, weights_dir, faithful, task, verbose, log, on_bad, audit, ...).
        config: the protocol settings; ``config.bootstrap`` resamples give the intervals, ``config.seed`` their
            seed (``seed + fold``) and the marked images' choice.
        scenarios: the scenarios to run (default: the 24 of ``radimagenet_scenarios()``).
        share: the share of the positive images marked, in [0, 1] (0: the marker is absent from training and
            only the reversed test images carry it).
        marker: the ``Marker``.

    Returns:
        The table (a pandas DataFrame), one row per (source, scenario): ``runs``, ``share``, the mean
        ``auc_marked`` (the runs' own test AUC), ``auc_clean``, ``auc_reversed``, the mean drops ``drop_clean``
        (marked − clean) and ``drop_reversed`` (marked − reversed) with their 95% paired patient-level bootstrap
        intervals (``_low``, ``_high``; the mean over runs, the folds' patients resampled independently),
        ``unit``, ``no_interval`` (the minimum-units rule's reason, when a run's test part is under it: then no
        interval and no verdict) and ``verdict`` ("relies on the marker" when the marked − reversed interval lies
        above 0, else "not shown").

    Raises:
        ValueError: more than two classes, ``share`` outside [0, 1], or an option's value.
    """
    options = GridOptions.build(options, keywords, "shortcut_test")
    require_image_set(image_set, "image_set", "shortcut_test")
    image_set, _ = check_images(image_set, options.on_bad)
    setup = grid_shortcut.ShortcutSetup(share, marker or Marker(), config.seed)
    clean, marked = grid_shortcut.marked_sets(image_set, setup)
    out = Path(out_dir).expanduser().resolve()
    run_grid(marked, out, options, config=config, scenarios=scenarios)
    setup.write(out)
    folds = options.folds if options.folds is not None else config.folds
    versions = grid_shortcut.test_versions(grid_splits(clean, config, folds, options.train_fraction), setup.marker)
    scored = grid_shortcut.score_runs(out, versions, config.batch_size)
    rows, resampled = grid_shortcut.run_rows(out, config.seed, config.bootstrap)
    table = grid_shortcut.shortcut_table(rows, resampled, share)
    written = grid_shortcut.write_table(table, rows, out, setup)
    if options.verbose:
        print(
            f"shortcut test: {scored} run(s) scored now, {len(rows)} in the table ({written[1]})",
            file=options.log or sys.stderr,
        )
    return table


def _train_sizes(parts) -> dict:
    """The mean training images and patients over a share's splits."""
    trains = [train for train, _, _ in parts]
    return {
        "n_train_images": float(np.mean([len(t) for t in trains])),
        "n_train_patients": float(
            np.mean([len(set(t.patient_ids)) if t.patient_ids is not None else len(t) for t in trains])
        ),
    }


def _wait_for_held_runs(job, runner, outcomes, by_id, progress, token) -> None:
    """Runs of this share that other live processes hold: retried every ``HELD_RUN_POLL_S`` seconds until
    they are recorded (by their holder) or their holder has died (then this process takes them over), so
    the share is complete when run_grid returns."""
    held = [by_id[o.run_id] for o in outcomes if o.state in ("held", "lost")]
    if held:
        progress.say(
            f"waiting for {len(held)} run(s) held by other processes ({', '.join(r.id for r in held[:3])}"
            f"{' …' if len(held) > 3 else ''}); checking every {grid_runs.HELD_RUN_POLL_S:g} s"
        )
    while held:
        time.sleep(grid_runs.HELD_RUN_POLL_S)
        retried = runner.run(job, held, progress, token)
        held = [by_id[o.run_id] for o in retried if o.state in ("held", "lost")]


def _stored_repeats(out: Path) -> int:
    """The repeats the grid in ``out`` records (1 for a new grid, or one written before repeats)."""
    stored = GridSpec.read(out)
    return stored.repeats if stored is not None else 1
