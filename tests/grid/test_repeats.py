"""Repeats: R seeded runs per (source, scenario, fold), paired across sources, resumable and shardable."""

from __future__ import annotations

import json

import numpy as np
import pytest

import radtransfer as rt
from radtransfer import protocol
from radtransfer.grid.plan import Run
from radtransfer.grid.records import GridSpec, RunRecord, fold_name, load_records, pair_path, run_dir
from radtransfer.models.presets import get_preset
from radtransfer.utils.seeding import derive_seed

SOURCES = ("radimagenet", "imagenet")


def test_repeat_zero_keeps_the_seed_folder_and_id_of_a_grid_without_repeats():
    scenario = protocol.Scenario("resnet50", "freeze_all", 1e-3)
    today = derive_seed(726, "run", scenario.id, 2)  # the seed of every grid written before repeats
    assert protocol.run_seed(726, scenario, 2) == protocol.run_seed(726, scenario, 2, 0) == today
    seeds = {protocol.run_seed(726, scenario, fold, repeat) for fold in range(3) for repeat in range(3)}
    assert len(seeds) == 9  # every (fold, repeat) its own seed
    assert Run("imagenet", scenario, 2).id == Run("imagenet", scenario, 2, 0).id == f"imagenet/{scenario.id}/fold2"
    assert Run("imagenet", scenario, 2, 1).id == f"imagenet/{scenario.id}/fold2-r1"
    assert run_dir("g", "imagenet", scenario.id, 2).as_posix() == f"g/runs/imagenet/{scenario.id}/fold2"
    assert run_dir("g", "imagenet", scenario.id, 2, 3).as_posix() == f"g/runs/imagenet/{scenario.id}/fold2-r3"
    assert pair_path("g", scenario.id, 0, "a", "b", 1).parent.name == fold_name(0, 1) == "fold0-r1"


def test_plans_with_repeats_extend_the_plan_without_repeats_and_shards_partition_them():
    scenarios = protocol.radimagenet_scenarios()
    once = protocol.plan_runs(SOURCES, scenarios, 2)
    assert protocol.plan_runs(SOURCES, scenarios, 2, repeats=1) == once
    thrice = protocol.plan_runs(SOURCES, scenarios, 2, repeats=3)
    assert len(thrice) == 3 * len(once) == len({r.id for r in thrice})
    assert thrice[: len(once)] == once  # repeat 0 first, in the order of the grid without repeats
    assert {r.repeat for r in thrice} == {0, 1, 2}
    shards = [protocol.plan_runs(SOURCES, scenarios, 2, f"{k}/5", repeats=3) for k in range(1, 6)]
    ids = [run.id for shard in shards for run in shard]
    assert sorted(ids) == sorted(run.id for run in thrice)  # disjoint and complete, repeats included
    from radtransfer.grid.plan import expected_cost

    work = [sum(expected_cost(run) for run in shard) for shard in shards]
    assert max(work) - min(work) <= max(expected_cost(run) for run in thrice)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="repeats"):
            protocol.plan_runs(SOURCES, scenarios, 1, repeats=bad)


def test_records_and_pairs_written_before_repeats_read_as_repeat_zero():
    old = {"task": "t", "source": "imagenet", "backbone": "resnet50", "strategy": "freeze_all"}
    record = RunRecord.from_dict({**old, "learning_rate": 1e-3, "fold": 1})
    assert record.repeat == 0 and record.run_id.endswith("/fold1")
    assert RunRecord.from_dict({**old, "learning_rate": 1e-3, "fold": 1, "repeat": 2}).run_id.endswith("/fold1-r2")
    assert GridSpec.from_dict({"task": "t"}).repeats == 1


def test_a_tiny_grid_with_two_repeats_gives_two_paired_records_per_cell(tmp_path, keras2_files):
    from conftest import two_class

    images = two_class(
        rt.datasets.load_synthetic_brain_mri(
            tmp_path / "data", n_patients=12, slices_per_patient=2, image_size=40, seed=4
        )
    )
    weights = tmp_path / "weights"
    keras2_files.place("test_tiny", weights, "RadImageNet-TestTiny_notop.h5")
    keras2_files.place("test_tiny", weights, get_preset("test_tiny", "imagenet").files[0], kind="weights")
    scenario = protocol.Scenario("test_tiny", "freeze_all", 1e-3)
    config = protocol.RADIMAGENET.replace(
        image_size=32, batch_size=32, augment=None, epochs=1, run_eagerly=True, bootstrap=50
    )
    grid = tmp_path / "grid"

    def run(repeats, shard=None):
        return protocol.run_grid(
            images,
            grid,
            config=config,
            sources=SOURCES,
            scenarios=[scenario],
            repeats=repeats,
            shard=shard,
            weights_dir=weights,
            verbose=0,
        )

    first = run(1)  # a grid without repeats ...
    assert len(first) == 2 and set(first["repeat"]) == {0}
    kept = {p: p.read_text() for p in grid.rglob("record.json")}
    records = run(2, shard="1/1")  # ... restarted with two: its records are kept, repeat 1 added
    assert all(p.read_text() == text for p, text in kept.items())
    assert len(records) == 4 and sorted(zip(records["source"], records["repeat"])) == sorted(
        (s, r) for s in SOURCES for r in (0, 1)
    )
    seeds = {}
    for source in SOURCES:
        for repeat in (0, 1):
            record = RunRecord.read(run_dir(grid, source, scenario.id, 0, repeat) / "record.json")
            assert (record.source, record.repeat, record.fold) == (source, repeat, 0)
            seeds[source, repeat] = record.run_seed
    assert seeds["radimagenet", 0] == seeds["imagenet", 0] == protocol.run_seed(config.seed, scenario, 0)
    assert seeds["radimagenet", 1] == seeds["imagenet", 1] != seeds["radimagenet", 0]  # paired per repeat
    pairs = sorted((grid / "pairs").rglob("*.json"))
    assert [p.parent.name for p in pairs] == ["fold0", "fold0-r1"]  # two paired records for the one cell
    for path, repeat in zip(pairs, (0, 1)):
        pair = json.loads(path.read_text())
        assert (pair["repeat"], pair["candidate"], pair["reference"]) == (repeat, *SOURCES)
        by_source = records[records["repeat"] == repeat].set_index("source")["auc"]
        assert pair["auc_candidate"] == pytest.approx(by_source["radimagenet"], nan_ok=True)
        assert pair["auc_reference"] == pytest.approx(by_source["imagenet"], nan_ok=True)
    assert np.isfinite(records["auc"]).all()
    assert GridSpec.read(grid).repeats == 2

    before = {p: p.stat().st_mtime_ns for p in grid.rglob("record.json")}
    again = run(1)  # restarted with fewer repeats: nothing to do, every record kept
    assert len(again) == 4 and {p: p.stat().st_mtime_ns for p in grid.rglob("record.json")} == before
    assert GridSpec.read(grid).repeats == 2  # the most repeats asked for
    assert len(run(2)) == 4 and {p: p.stat().st_mtime_ns for p in grid.rglob("record.json")} == before
    assert len(load_records(grid)) == 4


def test_the_cli_refuses_fewer_than_one_repeat_in_one_line(tmp_path, capsys):
    from PIL import Image

    from radtransfer.cli import main

    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "data" / name / "x.png")
    assert main(["grid", str(tmp_path / "data"), "--out", str(tmp_path / "grid"), "--repeats", "0"]) == 2
    error = capsys.readouterr().err
    assert "error: Expected --repeats to be an integer ≥ 1. Received: --repeats 0" in error and "Traceback" not in error
    assert not (tmp_path / "grid").exists()  # refused before anything was written
