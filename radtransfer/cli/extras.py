"""The handlers of the commands over many runs (``grid``, with its shortcut test, and ``curve``) and of ``predict``
(per image, and per patient or exam), kept apart from commands.py."""

from __future__ import annotations

from pathlib import Path

from .commands import check_run_dir, say, write_resolved
from .options import UsageError


def _protocol_config(args):
    """The paper's settings with the command's --cache, --epochs, --image-size, --batch-size, --seed, --run-eagerly."""
    from .. import protocol

    return protocol.RADIMAGENET.replace(
        **{k: getattr(args, k) for k in ("image_size", "batch_size", "epochs", "seed") if getattr(args, k) is not None},
        run_eagerly=args.run_eagerly,
        **({"cache": args.cache} if args.cache else {}),
    )


def check_shortcut(args) -> None:
    """grid's --shortcut SHARE, checked before TensorFlow starts: a share in [0, 1] and two classes in DATA."""
    import math

    share = getattr(args, "shortcut", None)
    if share is None:
        return
    if not math.isfinite(share) or not 0 <= share <= 1:
        raise UsageError(f"--shortcut {share:g}: expected the share of positive images marked, in [0, 1].")
    if args.image_set.num_classes != 2:
        raise UsageError(
            f"--shortcut needs two classes, but DATA has {args.image_set.num_classes} "
            f"({', '.join(map(str, args.image_set.class_names))}): give a two-class DATA."
        )


def cmd_grid(args) -> int:
    from .. import protocol

    scenarios = protocol.radimagenet_scenarios(args.backbones) if args.backbones else None
    if args.max_scenarios:
        scenarios = (scenarios or protocol.radimagenet_scenarios())[: args.max_scenarios]
    write_resolved(args.out, args)
    config = _protocol_config(args)
    if getattr(args, "shortcut", None) is not None:
        return _shortcut(args, config, scenarios)
    records = protocol.run_grid(args.image_set, args.out, args.grid_options, config=config, scenarios=scenarios)
    print(f"{len(records)} runs recorded in {args.out}")
    return 0


def _shortcut(args, config, scenarios) -> int:
    """grid --shortcut SHARE: ``protocol.shortcut_test`` with the grid's options; prints the table's rows."""
    from .. import protocol
    from ..grid.shortcut import TABLE

    table = protocol.shortcut_test(
        args.image_set, args.out, args.grid_options, config=config, scenarios=scenarios, share=args.shortcut
    )
    for row in table.itertuples():
        verdict = row.verdict or row.no_interval or ""
        print(
            f"{row.source} {row.scenario}: AUC marked {row.auc_marked:.3f}, clean {row.auc_clean:.3f}, reversed "
            f"{row.auc_reversed:.3f}; drop reversed {row.drop_reversed:.3f}; {verdict}"
        )
    out = Path(args.out)
    print(f"shortcut test of {len(table)} arm(s) in {out} ({TABLE}.csv, {TABLE}.md, {TABLE}_runs.csv)")
    return 0


def cmd_curve(args) -> int:
    from .. import protocol
    from ..grid import curve as grid_curve

    write_resolved(args.out, args)
    table = protocol.learning_curve(args.image_set, args.out, args.grid_options, config=_protocol_config(args))
    print(grid_curve.table_text(table))
    effects = Path(args.out) / f"{grid_curve.EFFECTS}.csv"
    if effects.exists():
        import pandas as pd

        paired = pd.read_csv(effects)
        if len(paired):
            print("\nfine-tuning − training from scratch, paired test AUC difference:")
            print(grid_curve.effects_summary(paired))
    print(f"learning curve in {args.out} (learning_curve.csv, .md, .png; learning_curve_effects.csv, .md)")
    return 0


def check_predict_level(args) -> None:
    """predict's --level, --aggregate and --exam-col, checked before TensorFlow starts; the exam ids read from
    the PATH manifests into ``args.exam_ids``."""
    args.exam_ids = None
    if args.level is None:
        if args.aggregate is not None or args.exam_col is not None:
            raise UsageError("--aggregate and --exam-col go with --level patient or exam.")
        return
    if args.level == "exam" and args.exam_col is None:
        raise UsageError("--level exam needs exam ids: give the CSV column that holds them as --exam-col.")
    if args.exam_col is not None:
        args.exam_ids = _exam_ids(args.images, args.exam_col)


def _exam_ids(images, exam_col: str) -> list:
    """The --exam-col values of the PATH manifests, one per row, in the order predict reads their images."""
    import pandas as pd

    ids = []
    for item in images:
        path = Path(item).expanduser()
        if path.suffix.lower() != ".csv" or not path.is_file():
            raise UsageError(f"--exam-col needs CSV manifests as PATH, but '{item}' is not one.")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if exam_col not in frame.columns:
            raise UsageError(f"--exam-col: column {exam_col!r} not found in '{item}'; its columns are {list(frame)}.")
        ids += frame[exam_col].tolist()
    return ids


def unit_file(out: Path, level: str) -> Path:
    """Where predict --level writes its per-unit CSV: beside the per-image one, ``<stem>-<level>.csv``."""
    return out.with_name(f"{out.stem}-{level}{out.suffix or '.csv'}")


def cmd_predict(args) -> int:
    from ..evaluation.prediction import predict

    check_run_dir(args.run_dir)
    frame = predict(
        args.run_dir,
        args.images,
        batch_size=args.batch_size,
        image_col=args.image_col,
        patient_col=args.patient_col,
        gradcam_dir=args.gradcam,
        on_bad=args.on_bad,
        note=lambda line: say(f"radtransfer: {line}"),
    )
    units = _units(frame, args) if args.level is not None else None  # refused before any file is written
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    unread = int(frame["error"].astype(bool).sum()) if "error" in frame else 0
    print(
        f"{len(frame)} images → {out}: {_counts(frame)}"
        + (f"; {unread} could not be read (see the error column)" if unread else "")
    )
    if units is not None:
        path = unit_file(out, args.level)
        units.to_csv(path, index=False)
        print(f"{len(units)} {args.level}s ({args.aggregate or 'mean'} of their images) → {path}: {_counts(units)}")
    return 0


def _counts(frame) -> str:
    return ", ".join(f"{name} {n}" for name, n in frame["predicted"].value_counts().items())


def _units(frame, args):
    """predict --level: the per-unit rows (``evaluation.unit_rows``), or a one-line refusal."""
    from ..evaluation.levels import unit_rows

    aggregate = args.aggregate or "mean"
    try:
        return unit_rows(frame, args.level, aggregate, exam_ids=args.exam_ids)
    except ValueError as exc:
        hint = " (give the CSV column of patient ids as --patient-col)" if args.level == "patient" else ""
        raise UsageError(f"--level {args.level} --aggregate {aggregate}: {exc}{hint}") from None
