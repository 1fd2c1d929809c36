"""How long ``data.from_directory`` takes to find the images of a folder, with and without non-image files.

    python benchmarks/file_discovery.py [--files 5000] [--repeat 3] [--keep DIR]

Writes (or reuses, with --keep) two class folders per scenario, ``--files`` files in all per scenario, and times
``from_directory`` on each (best of ``--repeat`` runs, warm file cache; wall and process CPU seconds):

- ``png``: small PNGs only (found by extension);
- ``clutter``: non-image files (half ``.txt``, half without an extension, 200 bytes each) and 10 PNGs: the files
  without an image extension are the ones whose first 132 bytes are read for the DICOM marker;
- ``dicom_dcm``: small DICOM files named ``*.dcm`` (PatientID read from each);
- ``dicom_bare``: the same DICOM files without an extension (found by their marker).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _write_png(path: Path, value: int) -> None:
    from PIL import Image

    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(path)


def _dicom_bytes() -> bytes:
    import io

    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = "P1", "MR"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.arange(64, dtype=np.uint16).tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def build(root: Path, files: int) -> dict:
    """{scenario: folder}, written unless already there."""
    per_class = files // 2
    scenarios = {name: root / name for name in ("png", "clutter", "dicom_dcm", "dicom_bare")}
    if all((folder / "b").is_dir() for folder in scenarios.values()):
        return scenarios
    dicom = _dicom_bytes()
    for name, folder in scenarios.items():
        for label in ("a", "b"):
            target = folder / label
            target.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                if name == "png":
                    _write_png(target / f"{k:05d}.png", k % 256)
                elif name == "clutter":
                    (target / (f"{k:05d}.txt" if k % 2 else f"{k:05d}")).write_bytes(b"x" * 200)
                elif name == "dicom_dcm":
                    (target / f"{k:05d}.dcm").write_bytes(dicom)
                else:
                    (target / f"{k:05d}").write_bytes(dicom)
            if name == "clutter":
                for k in range(5):
                    _write_png(target / f"image{k}.png", k)
    return scenarios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", help="folder to write the files to (and reuse)")
    args = parser.parse_args()
    from radtransfer import data

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="discovery-"))
    scenarios = build(root, args.files)
    print(f"files in {root}; load average {os.getloadavg()[0]:.1f}", flush=True)
    for name, folder in scenarios.items():
        best_wall = best_cpu = float("inf")
        found = None
        for _ in range(args.repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                found = len(data.from_directory(folder))
            except Exception as exc:  # noqa: BLE001 - reported: the version before extensionless DICOM
                found = f"{type(exc).__name__}: {str(exc)[:80]}"
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
        print(f"{name:11s} found {found}: {best_wall * 1000:8.1f} ms wall, {best_cpu * 1000:8.1f} ms CPU", flush=True)


if __name__ == "__main__":
    main()
