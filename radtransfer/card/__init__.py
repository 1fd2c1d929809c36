"""Model cards: ``MODEL_CARD.md`` and ``model_card.json`` of a run folder (``radtransfer train``, ``fine_tune``'s
out_dir) or a grid folder (``radtransfer grid``), made only from what the folder recorded.

Every number, setting and name in a card is read from the folder's files (config.json, state.json, result.json,
history.csv, best.keras's ``radtransfer.json`` member, test_metrics.json, the split CSVs, audit.json,
external-<site>.json; grid.json and the runs' record.json for a grid); what the files do not hold is said to be
"not recorded", never filled in; degenerate evidence (a zero-width or missing interval, a test performance at
chance, a threshold that calls every image one class) is named as such. The only fixed text is policy: the intended
use, the sentences its limitations are made of, and the names of the CLAIM checklist's items (Mongan, Moy and Kahn,
Radiology: Artificial Intelligence 2020; 42 items), each marked as answered by the records (and where), partly
answered, not answered (the records hold its evidence, missing or degenerate: why), or to be completed by the
author.

The markdown is rendered from the JSON card alone, so the two never disagree. No Keras or TensorFlow is imported:
the ``.keras`` file's metadata is read as a zip member (``models.trained.read_trained_info``).

The package: ``policy`` (the fixed text and the CLAIM items), ``reading`` (a folder's files, and the summaries both
cards share), ``run`` (a run folder's card), ``grid`` (a grid folder's card), ``markdown`` (the card's sections,
rendered).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RadtransferError
from ..grid.records import GRID_FILE
from ..training.run_folder import BEST_MODEL, CONFIG
from ..utils.io import write_json_atomic, write_text_atomic
from .grid import grid_card
from .markdown import to_markdown
from .run import run_card

__all__ = [
    "CARD_JSON",
    "MODEL_CARD",
    "folder_kind",
    "model_card",
    "not_a_folder_message",
    "to_markdown",
    "write_model_card",
]

MODEL_CARD = "MODEL_CARD.md"
CARD_JSON = "model_card.json"


def folder_kind(path) -> str | None:
    """What a folder holds: "grid" (a ``radtransfer grid`` folder: grid.json), "run" (a training run: config.json
    or best.keras), or None.

    Args:
        path: the folder.

    Returns:
        "grid", "run" or None.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return None
    if (folder / GRID_FILE).exists():
        return "grid"
    if (folder / CONFIG).exists() or (folder / BEST_MODEL).exists():
        return "run"
    return None


def not_a_folder_message(path) -> str:
    """The one-line error for a path that is neither a run nor a grid folder."""
    return (
        f"No run or grid folder at '{path}': pass the out folder of 'radtransfer train' (it holds {CONFIG} and "
        f"{BEST_MODEL}) or of 'radtransfer grid' (it holds {GRID_FILE})."
    )


def model_card(run_or_grid_dir) -> dict:
    """The model card of a run or grid folder, built only from the folder's files.

    Args:
        run_or_grid_dir: the out folder of ``radtransfer train`` / ``fine_tune`` (a run), or of ``radtransfer grid``.

    Returns:
        A JSON-ready dict: ``kind`` ("run" or "grid"), ``files_read``, ``not_recorded`` (what the files do not say),
        the sections (run: ``model``, ``intended_use``, ``training``, ``data``, ``audit``, ``evaluation``,
        ``calibration``, ``threshold``, ``external``, ``software``; grid: ``audit``, ``grid``, ``weights``,
        ``runs``, ``scenario_means``, ``intended_use``, ``software``) and ``claim``, the 42 CLAIM items each with
        its ``status`` ("answered", "partly", "not answered" or "author") and ``where`` the records answer it (or, not
        answered, why not).

    Raises:
        RadtransferError: the path is neither a run nor a grid folder.
    """
    folder = Path(run_or_grid_dir).expanduser()
    kind = folder_kind(folder)
    if kind is None:
        raise RadtransferError(not_a_folder_message(run_or_grid_dir))
    return grid_card(folder) if kind == "grid" else run_card(folder)


def write_model_card(run_or_grid_dir, out_dir=None) -> tuple[Path, Path]:
    """Writes ``MODEL_CARD.md`` and ``model_card.json`` of a run or grid folder, each atomically.

    Args:
        run_or_grid_dir: the run or grid folder (see ``model_card``).
        out_dir: where to write them (default: the folder itself; created if missing).

    Returns:
        (path of MODEL_CARD.md, path of model_card.json).

    Raises:
        RadtransferError: the path is neither a run nor a grid folder.
    """
    card = model_card(run_or_grid_dir)
    out = Path(out_dir).expanduser() if out_dir is not None else Path(run_or_grid_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    markdown, payload = out / MODEL_CARD, out / CARD_JSON
    write_json_atomic(payload, card)
    write_text_atomic(markdown, to_markdown(card))
    return markdown, payload
