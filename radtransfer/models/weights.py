"""Finding, checking and loading Keras 2 ``.h5`` weight files (ImageNet and RadImageNet).

Files are read with h5py and assigned layer by layer in topological order, never by name (Keras
auto-numbers the Inception layer names). Every file is checked against the backbone before a single
weight is assigned, so a wrong file fails with a message that says what it looks like.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import WeightsFileError, WeightsNotFoundError
from ..utils.choices import did_you_mean
from .backbones import BACKBONES, BackboneSpec, get_backbone, identify_by_weight_layers
from .presets import (
    FOUNDATION_PRESETS,
    HF_FILES,
    KERAS_HUB_FILES,
    WEIGHT_SOURCES,
    FoundationPreset,
    WeightPreset,
    foundation_presets_of,
    get_preset,
    preset_of_file,
    presets_of,
)

ENV_WEIGHTS_DIR = "RADTRANSFER_WEIGHTS_DIR"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a model's weights come from.

    Attributes:
        source: "radimagenet", "imagenet", "file" (a path of unknown origin) or None (random init).
        path: the file, or None for random initialisation.
        searched: the folders that were searched, in order (empty for an explicit path).
    """

    source: str | None
    path: Path | None
    searched: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadedWeights:
    """What build_model loaded into a backbone.

    Attributes:
        source: as ``ResolvedWeights.source``, or a foundation preset's name ("dinov2_small").
        path: the file or folder, or None (random initialisation, or downloaded by keras-hub).
        sha256: the weight file's sha256, or None.
        preprocessing: the Preprocess mode the weights carry (foundation encoders), or None (the weight source's,
            from ``presets.preprocessing_for``).
    """

    source: str | None
    path: Path | None
    sha256: str | None
    preprocessing: str | None = None


@dataclass
class WeightFile:
    """The structure of a Keras 2 HDF5 weight file, read without loading the arrays.

    Attributes:
        path: the file.
        kind: "full-model" (a ``model_weights`` group, as RadImageNet publishes) or "weights-only"
            (as Keras's download cache holds).
        layers: (layer name, [dataset paths], [weight shapes]) for each weight-bearing layer, in the
            file's (topological) order; nested models are flattened into their layers.
        keras_version: the Keras version that wrote the file, if recorded.
    """

    path: Path
    kind: str
    layers: list = field(default_factory=list)
    keras_version: str | None = None


def _decode(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


_DIGESTS: dict = {}


def sha256sum(path, chunk_size: int = 1 << 20) -> str:
    """Returns the sha256 hex digest of a file.

    Remembered per (path, size, modification time) within the process: a grid or a layer-wise search
    rebuilds models from the same few hundred-megabyte files many times.
    """
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(chunk_size), b""):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def read_weight_file(path) -> WeightFile:
    """Reads the layer structure of a Keras 2 ``.h5`` file (names and shapes, not the arrays).

    Raises:
        WeightsNotFoundError: the path does not exist.
        WeightsFileError: the file is not HDF5, is truncated, or is not a Keras 2 weight file.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise WeightsNotFoundError(f"Weights file not found: '{path}'.")
    if path.is_dir():
        raise WeightsFileError(f"Expected a weights file, got a folder: '{path}'.")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(ZIP_SIGNATURE):
        raise WeightsFileError(
            f"'{path}' is a zip archive (a Keras 3 .keras model?), not a Keras 2 .h5 weights file. "
            "Load it with keras.saving.load_model, or pass the .h5 file."
        )
    if head != HDF5_SIGNATURE:
        what = "is empty" if size == 0 else f"does not start with the HDF5 signature ({size} bytes)"
        raise WeightsFileError(f"'{path}' is not an HDF5 weights file: it {what}. Download the file again.")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        reason = str(exc)
        if "truncated" in reason:
            raise WeightsFileError(
                f"'{path}' is truncated ({size:,} bytes on disk; the HDF5 header expects more). "
                "The download was probably interrupted: download the file again."
            ) from None
        raise WeightsFileError(f"'{path}' could not be read as HDF5 ({reason}).") from None
    with handle:
        group = handle["model_weights"] if "model_weights" in handle else handle
        kind = "full-model" if "model_weights" in handle else "weights-only"
        if "layer_names" not in group.attrs:
            if "vars" in handle or "layers" in handle or "_layer_checkpoint_dependencies" in handle:
                raise WeightsFileError(
                    f"'{path}' is a Keras 3 weights file (written by save_weights), not a Keras 2 "
                    "file as ImageNet and RadImageNet publish. Build the model with weights=None "
                    "and call model.load_weights on it instead."
                )
            raise WeightsFileError(
                f"'{path}' is an HDF5 file but not a Keras weights file (no 'layer_names' "
                "attribute). Expected a Keras 2 .h5 file such as RadImageNet-DenseNet121_notop.h5."
            )
        try:
            layers = _read_layers(group)
        except (KeyError, OSError) as exc:
            raise WeightsFileError(
                f"'{path}' is damaged: a listed weight could not be read ({exc}). Download the file again."
            ) from None
        version = group.attrs.get("keras_version", handle.attrs.get("keras_version"))
    return WeightFile(path, kind, layers, _decode(version) if version is not None else None)


def _read_layers(group) -> list:
    layers = []
    for layer_name in (_decode(n) for n in group.attrs["layer_names"]):
        layer_group = group[layer_name]
        weight_names = [_decode(n) for n in layer_group.attrs.get("weight_names", [])]
        if not weight_names:
            continue
        # Weight names are "<layer>/<weight>:0". A nested model stores all its sub-layers' weights
        # under one entry (trainable ones first), so regroup them by sub-layer, keeping first-seen
        # order, which is the topological order of the sub-layers.
        prefixes = {w.rsplit("/", 1)[0] for w in weight_names}
        if len(prefixes) <= 1:
            groups = {layer_name: weight_names}
        else:
            groups = {}
            for w in weight_names:
                groups.setdefault(w.rsplit("/", 1)[0], []).append(w)
        for name, names in groups.items():
            paths = [f"{layer_name}/{w}" for w in names]
            layers.append((name, paths, [tuple(group[p].shape) for p in paths]))
    return layers


def model_signature(backbone) -> list:
    """(layer name, [weight shapes]) of each weight-bearing layer of a built Keras model."""
    return [(layer.name, [tuple(w.shape) for w in layer.weights]) for layer in backbone.layers if layer.weights]


def _describe_count(count: int) -> str:
    matches = identify_by_weight_layers(count)
    if not matches:
        return f"{count} weight layers, which matches none of {', '.join(s.display_name for s in BACKBONES.values())}"
    spec, with_top = matches[0]
    if with_top:
        return f"{spec.display_name} with its classifier top ({count} weight layers)"
    return f"{spec.display_name} ({count} weight layers)"


def check_weight_file(path, backbone, signature=None) -> WeightFile:
    """Checks that a file holds notop weights for a backbone, without loading them.

    Args:
        path: the ``.h5`` file.
        backbone: backbone name or registry entry.
        signature: the model's ``model_signature``; if None, only the layer count is checked.

    Returns:
        The file's structure.

    Raises:
        WeightsFileError: the file does not fit the backbone; the message says what it looks like.
    """
    spec = get_backbone(backbone)
    info = read_weight_file(path)
    count = len(info.layers)
    expected = spec.weight_layers
    if count == expected + 1 and len(info.layers[-1][2][0]) == 2:
        top_name, _, top_shapes = info.layers[-1]
        raise WeightsFileError(
            f"'{info.path}' has a classifier top (layer '{top_name}', {top_shapes[0][1]} classes); "
            f"radtransfer needs the notop file for {spec.display_name} "
            f"(e.g. {' or '.join(p.files[0] for p in presets_of(spec))})."
        )
    if count != expected:
        raise WeightsFileError(
            f"'{info.path}' looks like {_describe_count(count)}, not {spec.display_name} "
            f"({expected}). Pass the file that matches backbone='{spec.name}'."
        )
    if signature is not None:
        for index, ((file_name, _, file_shapes), (model_name, model_shapes)) in enumerate(zip(info.layers, signature)):
            if list(file_shapes) != list(model_shapes):
                raise WeightsFileError(
                    f"'{info.path}' does not fit {spec.display_name}: weight layer {index} "
                    f"('{file_name}' in the file, '{model_name}' in the model) has shapes "
                    f"{file_shapes} in the file but the model expects {model_shapes}."
                )
    return info


def load_backbone_weights(backbone_model, path, backbone) -> WeightFile:
    """Checks a file against a built backbone, then assigns its arrays in topological order.

    Args:
        backbone_model: the keras.applications network (built with ``weights=None``).
        path: a Keras 2 ``.h5`` file (full-model or weights-only).
        backbone: its backbone name or registry entry.

    Returns:
        The file's structure.
    """
    import h5py

    signature = model_signature(backbone_model)
    info = check_weight_file(path, backbone, signature)
    weight_layers = [layer for layer in backbone_model.layers if layer.weights]
    with h5py.File(info.path, "r") as handle:
        group = handle["model_weights"] if "model_weights" in handle else handle
        for layer, (_, dataset_paths, _) in zip(weight_layers, info.layers):
            layer.set_weights([group[p][()] for p in dataset_paths])
    return info


def search_dirs(weights_dir=None, include_keras_cache: bool = False) -> list[Path]:
    """The folders searched for weight files, in order.

    Order: ``weights_dir``; ``$RADTRANSFER_WEIGHTS_DIR`` (several folders separated by
    ``os.pathsep`` are allowed); ``./weights``; then, for ImageNet files, Keras's cache
    (``$KERAS_HOME/models``, default ``~/.keras/models``).
    """
    dirs = []
    if weights_dir is not None:
        dirs.append(Path(weights_dir).expanduser())
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        dirs += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    dirs.append(Path("weights"))
    if include_keras_cache:
        dirs.append(keras_cache_dir())
    unique = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def keras_cache_dir() -> Path:
    """Keras's download cache for model weights (``$KERAS_HOME/models``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def _find_in(directory: Path, names) -> Path | None:
    if not directory.is_dir():
        return None
    for name in names:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    lowered = {n.lower() for n in names}
    for candidate in sorted(directory.iterdir()):
        if candidate.name.lower() in lowered and candidate.is_file():
            return candidate
    return None


def _looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.lower().endswith((".h5", ".hdf5", ".keras")) or Path(value).exists()


def source_of_file(path, backbone) -> str:
    """Guesses a file's weight source from its name: a preset's source ("radimagenet", "imagenet") or "file"."""
    name = Path(path).name
    preset = preset_of_file(name, backbone)
    if preset is not None:
        return preset.source
    return "radimagenet" if name.lower().startswith("radimagenet") else "file"


def resolve_weights(backbone, weights="radimagenet", weights_dir=None, download: bool = True) -> ResolvedWeights:
    """Finds the weight file for a backbone and weight source.

    Args:
        backbone: backbone name or registry entry.
        weights: "radimagenet", "imagenet", None (random initialisation) or a path to an ``.h5`` file.
        weights_dir: a folder searched first.
        download: for ImageNet, download through Keras when no file is found.

    Raises:
        WeightsNotFoundError: the file was not found (the message lists every folder searched and
            where to get the file).
        ValueError: ``weights`` is neither a source nor a path.
    """
    spec = get_backbone(backbone)
    if weights is None:
        return ResolvedWeights(None, None)
    if isinstance(weights, os.PathLike) or (
        isinstance(weights, str) and weights.lower() not in WEIGHT_SOURCES and _looks_like_path(weights)
    ):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"Weights file not found: '{path}' (weights={str(weights)!r}). Check the path, or pass "
                "weights='radimagenet' or 'imagenet' to search the usual folders."
            )
        return ResolvedWeights(source_of_file(path, spec), path)
    if not isinstance(weights, str) or weights.lower() not in WEIGHT_SOURCES:
        raise ValueError(
            "Expected weights='radimagenet', 'imagenet', None or a path to an .h5 file."
            f"{did_you_mean(weights, WEIGHT_SOURCES) if isinstance(weights, str) else ''} "
            f"Received: weights={weights!r}"
        )
    preset = get_preset(spec, weights)
    dirs = search_dirs(weights_dir, include_keras_cache=preset.downloadable)
    searched = tuple(str(d.resolve()) if d.exists() else str(d) for d in dirs)
    for directory in dirs:
        found = _find_in(directory, preset.files)
        if found is not None:
            return ResolvedWeights(preset.source, found, searched)
    if preset.downloadable and download:
        return ResolvedWeights(preset.source, _download(spec, preset, searched), searched)
    raise WeightsNotFoundError(_not_found_message(spec, preset, searched))


def resolve_foundation_weights(backbone, weights, weights_dir=None) -> ResolvedWeights:
    """Finds the weights of a foundation backbone (DINOv2, SigLIP): a folder, not a file.

    Args:
        backbone: "dinov2" or "siglip" (or the registry entry).
        weights: None (random initialisation), a named preset ("dinov2_small"; ``FOUNDATION_PRESETS``), or the path
            of a folder in keras-hub's format (config.json + model.weights.h5) or Hugging Face's (config.json +
            model.safetensors).

    Returns:
        ResolvedWeights: the source (the preset's name, or "file" for a folder of unknown origin) and the folder; for
        a named preset not found in the weight folders, the folder is None and ``searched`` lists where it was
        looked for (the caller then asks keras-hub to download it).

    Raises:
        WeightsNotFoundError: the path does not exist.
        WeightsFileError: the folder lacks the files of either format.
        ValueError: ``weights`` is neither a preset of this backbone nor a path.
    """
    spec = get_backbone(backbone)
    if weights is None:
        return ResolvedWeights(None, None)
    names = [p.name for p in foundation_presets_of(spec)]
    key = str(weights).strip().lower()
    if not isinstance(weights, os.PathLike) and key in names:
        preset = FOUNDATION_PRESETS[key]
        dirs = search_dirs(weights_dir)
        searched = tuple(str((d / preset.name).resolve()) for d in dirs)
        for directory in dirs:
            folder = directory / preset.name
            if (folder / "config.json").is_file():
                foundation_folder_format(folder)
                return ResolvedWeights(preset.name, folder, searched)
        return ResolvedWeights(preset.name, None, searched)
    if isinstance(weights, os.PathLike) or _looks_like_path(str(weights)):
        folder = Path(weights).expanduser()
        if not folder.exists():
            raise WeightsNotFoundError(
                f"Weights folder not found: '{folder}' (weights={str(weights)!r}). Pass a keras-hub preset folder "
                f"({' + '.join(KERAS_HUB_FILES)}) or a Hugging Face folder ({' + '.join(HF_FILES)})."
            )
        foundation_folder_format(folder)
        source = folder.name.lower() if folder.name.lower() in names else "file"
        return ResolvedWeights(source, folder)
    raise ValueError(
        f"{spec.display_name} takes weights=None, a preset ({', '.join(names)}) or the path of a keras-hub or Hugging "
        f"Face folder.{did_you_mean(str(weights), names)} Received: weights={weights!r}"
    )


def find_foundation_preset(backbone, preset: str, weights_dir=None) -> ResolvedWeights:
    """A grid's foundation preset by name: a named preset of the backbone (its folder in the weight folders, or
    ``path`` None for keras-hub to download it), or a preset folder named ``preset`` in the weight folders
    (``search_dirs``).

    Raises:
        WeightsNotFoundError: no folder of that name holds a config.json (the message lists where it looked).
        WeightsFileError: the folder lacks the files of either format.
    """
    spec = get_backbone(backbone)
    if preset.strip().lower() in [p.name for p in foundation_presets_of(spec)]:
        return resolve_foundation_weights(spec, preset, weights_dir)
    dirs = search_dirs(weights_dir)
    for directory in dirs:
        folder = directory / preset
        if (folder / "config.json").is_file():
            foundation_folder_format(folder)
            return ResolvedWeights("file", folder)
    searched = "; ".join(str((d / preset).resolve()) for d in dirs)
    raise WeightsNotFoundError(
        f"No {spec.display_name} preset folder '{preset}' found (looked in: {searched}). Save the preset there "
        f"(config.json + model.weights.h5, e.g. by keras-hub's save_to_preset), pass weights_dir=, or name a preset "
        f"({', '.join(p.name for p in foundation_presets_of(spec))})."
    )


def foundation_folder_format(folder) -> str:
    """ "keras_hub" (config.json + model.weights.h5) or "transformers" (config.json + model.safetensors, or its
    sharded index).

    Raises:
        WeightsFileError: the path is a file, or the folder holds neither set of files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsFileError(
            f"'{folder}' is a file; DINOv2 and SigLIP weights are a folder "
            f"({' + '.join(KERAS_HUB_FILES)}, or {' + '.join(HF_FILES)}). Pass the folder."
        )
    present = {p.name for p in folder.iterdir()}
    if set(KERAS_HUB_FILES) <= present:
        return "keras_hub"
    if "config.json" in present and ({"model.safetensors", "model.safetensors.index.json"} & present):
        return "transformers"
    raise WeightsFileError(
        f"'{folder}' holds neither keras-hub's files ({' + '.join(KERAS_HUB_FILES)}) nor Hugging Face's "
        f"({' + '.join(HF_FILES)}); found: {', '.join(sorted(present)) or 'nothing'}. Put one set of files there."
    )


def foundation_weights_file(folder) -> Path:
    """The weight file of a foundation folder (what its sha256 is taken of)."""
    folder = Path(folder)
    name = "model.weights.h5" if foundation_folder_format(folder) == "keras_hub" else "model.safetensors"
    path = folder / name
    return path if path.is_file() else folder / "model.safetensors.index.json"


def foundation_not_found_message(preset: FoundationPreset, searched, reason: str) -> str:
    """One line: the named preset is not on this machine and keras-hub could not download it."""
    return (
        f"No {preset.label} weights found: looked for a folder '{preset.name}' in: {'; '.join(searched)}, and "
        f"keras-hub could not download '{preset.keras_hub}' ({reason}). Put {' + '.join(HF_FILES)} from "
        f"{preset.url} (or {' + '.join(KERAS_HUB_FILES)} of keras-hub's '{preset.keras_hub}') in one of those "
        f"folders, or pass weights='/path/to/folder' or weights_dir=."
    )


def check_foundation_checksum(preset: FoundationPreset | None, path: Path) -> str:
    """The sha256 of a foundation weight file; raises WeightsFileError if the preset records a different one."""
    digest = sha256sum(path)
    expected = dict(preset.sha256).get(path.name) if preset is not None else None
    if expected and expected != digest:
        raise WeightsFileError(
            f"'{path}' has sha256 {digest}, but {preset.label}'s {path.name} has {expected}. The file is not the "
            f"published one: download it again from {preset.url}."
        )
    return digest


def best_available_weights(backbone, weights_dir=None):
    """The best pretrained weights already on this machine, without downloading anything.

    Returns:
        (source, path, notice): RadImageNet if found by the usual search, else ImageNet if found (Keras's
        cache included), else (None, None, a notice saying training starts from random initialisation).
    """
    spec = get_backbone(backbone)
    for source in WEIGHT_SOURCES:
        try:
            resolved = resolve_weights(spec, source, weights_dir, download=False)
            return source, resolved.path, None
        except WeightsNotFoundError:
            continue
    files = " nor ".join(f"{p.label}'s {p.files[0]}" for p in presets_of(spec))
    notice = (
        f"NO PRETRAINED WEIGHTS FOUND: neither {files} is on this machine (see docs/weights.md), so "
        f"{spec.display_name} is trained FROM RANDOM INITIALISATION. The numbers show the pipeline working, "
        "not what transfer learning achieves."
    )
    return None, None, notice


def _not_found_message(spec: BackboneSpec, preset: WeightPreset, searched) -> str:
    where = (
        f"Keras downloads it from {preset.url}"
        if preset.downloadable
        else f"{preset.label} weights are not downloaded automatically: get them from the {preset.label} project "
        f"({preset.url}, README, "
        "'pretrained models')"
    )
    return (
        f"No {preset.source} weights found for {spec.display_name}. Looked for "
        f"{' or '.join(repr(n) for n in preset.files)} in: {'; '.join(searched)}. {where}, and put the file "
        f"in one of those folders, or pass weights_dir= or weights='/path/to/file.h5' "
        f"(or set ${ENV_WEIGHTS_DIR}); or pass weights=None to train from random initialisation."
    )


def _download(spec: BackboneSpec, preset: WeightPreset, searched) -> Path:
    from keras.utils import get_file

    try:
        path = get_file(preset.files[0], preset.url, cache_subdir="models", file_hash=preset.md5)
    except Exception as exc:  # Keras raises a bare Exception on URL errors
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsNotFoundError(
            f"Could not download {preset.label} weights for {spec.display_name} from {preset.url} "
            f"({reason}). Offline? Copy {preset.files[0]} into one of: {'; '.join(searched)}, "
            "or pass weights='/path/to/file.h5'."
        ) from None
    return Path(path)


def check_sha256(path, expected: str) -> str:
    """Raises WeightsFileError unless the file's sha256 equals `expected`; returns the digest."""
    actual = sha256sum(path)
    if actual.lower() != expected.strip().lower():
        raise WeightsFileError(
            f"'{path}' has sha256 {actual}, but weights_sha256={expected!r} was pinned. The file is "
            "not the one you pinned: download it again or update the pin."
        )
    return actual


def find_weight_files(weights_dir=None, check: bool = True) -> list[dict]:
    """Lists every ``.h5`` file in the weight search folders (Keras's cache included).

    Args:
        weights_dir: an extra folder, searched first.
        check: also open each file and check it against the backbone its name implies (or, for
            an unknown name, the backbone its layer count matches).

    Returns:
        One dict per file: ``path``, ``folder``, ``size``, ``sha256``, ``backbone``, ``source``,
        ``matches`` (True, False or None when it could not be decided) and ``detail``.
    """
    rows = []
    for directory in search_dirs(weights_dir, include_keras_cache=True):
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.h5")):
            rows.append(_describe_file(path, directory, check))
    return rows


def _backbone_for_name(path: Path):
    preset = preset_of_file(path.name)
    if preset is not None:
        return get_backbone(preset.backbone), preset.source
    return None, "file"


def _describe_file(path: Path, directory: Path, check: bool) -> dict:
    spec, source = _backbone_for_name(path)
    row = {
        "path": str(path),
        "folder": str(directory),
        "size": path.stat().st_size,
        "sha256": sha256sum(path),
        "backbone": spec.name if spec else None,
        "source": source,
        "matches": None,
        "detail": "",
    }
    if not check:
        return row
    try:
        if spec is None:
            info = read_weight_file(path)
            found = identify_by_weight_layers(len(info.layers))
            row["detail"] = "unrecognised name; looks like " + _describe_count(len(info.layers))
            if found and not found[0][1]:
                row["backbone"] = found[0][0].name
            return row
        check_weight_file(path, spec, _cached_signature(spec.name))
        row["matches"] = True
        row["detail"] = f"{spec.display_name} notop, {spec.weight_layers} weight layers"
    except (WeightsFileError, WeightsNotFoundError) as exc:
        row["matches"] = False
        row["detail"] = str(exc)
    return row


_SIGNATURES: dict = {}


def _cached_signature(name: str):
    if name not in _SIGNATURES:
        spec = BACKBONES[name]
        model = spec.build((spec.min_size, spec.min_size, 3), name=f"{name}_signature")
        _SIGNATURES[name] = model_signature(model)
    return _SIGNATURES[name]
