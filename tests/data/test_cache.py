"""Disk caches survive what clusters do to jobs: a writer killed mid-fill (SIGKILL, SIGTERM), two processes
filling one cache at once, and a dataset read only in part. Each later run reads every image, equal to an
uncached read of the same files."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import numpy as np
import pytest
import warm_python
from PIL import Image

from radtransfer import data
from radtransfer.data.tf_data import pipeline
from radtransfer.data.tf_data.stream import stream_of

N = 40
SIZE = (32, 32)

# A process that fills a disk cache slowly (a pause per image), so that it can be stopped mid-fill or overlap
# another one: it prints "filling" once the cache's writer has started, then reads the whole set and saves it.
WORKER = r"""
import json, sys, time
import numpy as np
import tensorflow as tf
from radtransfer import data
from radtransfer.data.tf_data import pipeline

args = json.loads(sys.argv[1])
original = pipeline._loader


def nap(index):
    if index == 3:
        print("filling", flush=True)
    time.sleep(args["pause"])
    return index


def slow_loader(*a, **k):
    load = original(*a, **k)

    def slowed(indices):
        def one(i):
            i = tf.numpy_function(nap, [i], tf.int64, stateful=True)
            i.set_shape([])
            return i
        return load(indices.map(one))
    return slowed


pipeline._loader = slow_loader
image_set = data.ImageSet(paths=args["paths"], labels=np.array(args["labels"]), class_names=("a", "b"))
dataset = data.make_dataset(image_set, **args["kwargs"])
batches = list(dataset)
np.savez(args["out"], images=np.concatenate([b[0].numpy() for b in batches]),
         labels=np.concatenate([b[1].numpy() for b in batches]))
print("done", flush=True)
"""


@pytest.fixture(scope="module")
def image_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    labels = np.arange(N) % 2
    paths = []
    for i in range(N):
        path = root / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return data.ImageSet(paths=paths, labels=labels, class_names=("a", "b"))


def _read(image_set, **kwargs):
    batches = list(data.make_dataset(image_set, image_size=SIZE, batch_size=8, shuffle=False, **kwargs))
    return np.concatenate([b[0].numpy() for b in batches]), np.concatenate([b[1].numpy() for b in batches])


@pytest.fixture(scope="module")
def uncached(image_set):
    return _read(image_set, cache=False)


def _disk(cache_dir):
    """make_dataset arguments for an "auto" cache that cannot fit in memory: a file in ``cache_dir``."""
    return {"cache": "auto", "memory_budget": 1, "cache_dir": str(cache_dir)}


def _start(image_set, tmp_path, kwargs, pause=0.05, name="worker"):
    args = {
        "paths": list(map(str, image_set.paths)),
        "labels": image_set.labels.tolist(),
        "pause": pause,
        "out": str(tmp_path / f"{name}.npz"),
        "kwargs": {"image_size": list(SIZE), "batch_size": 8, "shuffle": False, **kwargs},
    }
    return warm_python.Popen([sys.executable, "-c", WORKER, json.dumps(args)])


def _wait_for_fill(process, folder):
    line = process.stdout.readline()
    assert line.strip() == "filling", process.communicate()[1][-3000:]
    deadline = time.monotonic() + 10
    while not list(folder.glob("*lockfile")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(folder.glob("*lockfile")), "the cache's writer never started"


def _assert_same(result, expected):
    images, labels = result
    assert images.shape == (N, *SIZE, 3)
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_writer_killed_mid_fill_leaves_nothing_that_breaks_a_later_run(image_set, uncached, tmp_path, sig):
    folder = tmp_path / "cache"
    writer = _start(image_set, tmp_path, _disk(folder), pause=0.2)
    try:
        _wait_for_fill(writer, folder)
        writer.send_signal(sig)
    finally:
        writer.kill()
        writer.communicate()
    assert not (tmp_path / "worker.npz").exists()

    _assert_same(_read(image_set, **_disk(folder)), uncached)
    assert len(list(folder.glob("*.index"))) == 1
    assert not list(folder.glob("*lockfile")) and not list(folder.glob("*.tmp-*"))  # the dead writer's files
    _assert_same(_read(image_set, **_disk(folder)), uncached)  # and once more, from the published cache


def test_two_processes_filling_one_cache_at_once_both_succeed(image_set, uncached, tmp_path, monkeypatch, caplog):
    """A worker fills the cache slowly; this process fills the same one meanwhile (more slowly, so the worker
    publishes first and this one finds a complete cache when it is done)."""
    caplog.set_level("INFO", logger="radtransfer.data")
    prefix = str(tmp_path / "cache" / "split")
    worker = _start(image_set, tmp_path, {"cache": prefix}, pause=0.1)
    try:
        _wait_for_fill(worker, tmp_path / "cache")
        original = pipeline._loader

        def slow_loader(*args, **kwargs):
            import tensorflow as tf

            load = original(*args, **kwargs)

            def nap(index):
                time.sleep(0.15)
                return index

            def one(i):
                i = tf.numpy_function(nap, [i], tf.int64, stateful=True)
                i.set_shape([])
                return i

            return lambda indices: load(indices.map(one))

        monkeypatch.setattr(pipeline, "_loader", slow_loader)
        here = _read(image_set, cache=prefix)
        monkeypatch.setattr(pipeline, "_loader", original)
        _, err = worker.communicate(timeout=120)
    finally:
        worker.kill()
        worker.communicate()
    assert worker.returncode == 0, err[-3000:]
    assert "filling the disk cache" in caplog.text and "another process published it first" in caplog.text
    _assert_same(here, uncached)
    saved = np.load(tmp_path / "worker.npz")
    _assert_same((saved["images"], saved["labels"]), uncached)
    _assert_same(_read(image_set, cache=prefix), uncached)
    assert len(list((tmp_path / "cache").glob("*.index"))) == 1
    assert not list((tmp_path / "cache").glob("*lockfile")) and not list((tmp_path / "cache").glob("*.tmp-*"))


def test_a_dataset_read_in_part_leaves_no_partial_cache(image_set, uncached, tmp_path):
    """A dataset read only in part (``take``, or an iterator still open mid-set) while a later dataset of the
    same split is read in full: the later one sees every image, and so does a run after both."""
    first = data.make_dataset(image_set, image_size=SIZE, batch_size=8, shuffle=False, **_disk(tmp_path))
    assert stream_of(first).cache.mode == "disk"
    assert len(list(first.take(2))) == 2
    still_open = iter(first)
    next(still_open)
    _assert_same(_read(image_set, **_disk(tmp_path)), uncached)
    del still_open
    _assert_same(_read(image_set, **_disk(tmp_path)), uncached)
    assert len(list(tmp_path.glob("*.index"))) == 1


def test_leftovers_of_dead_writers_are_ignored_and_removed_once_stale(image_set, uncached, tmp_path, caplog):
    """What a killed writer can leave next to a cache: TensorFlow's lockfile and partial data at the final name
    (TensorFlow's own cache, as earlier versions filled it), data renamed without its index (a publication cut
    short), and a fill by a process of another machine (kept while it may be alive, removed once stale)."""
    from radtransfer.data import cache as cache_module

    path = stream_of(data.make_dataset(image_set, image_size=SIZE, shuffle=False, **_disk(tmp_path))).cache.path
    for name in tmp_path.iterdir():
        name.unlink()
    tf_lockfile, tf_partial = f"{path}_0.lockfile", f"{path}_0.data-00000-of-00001.tempstate123"
    other = f"{path}.tmp-elsewhere-1-0123abcd"
    for name, content in [
        (tf_lockfile, "Created at: 1"),
        (tf_partial, "partial"),
        (f"{path}.data-00000-of-00001", "cut short"),
        (f"{other}.owner", json.dumps({"machine": "elsewhere/boot/ns", "pid": 1})),
        (f"{other}_0.lockfile", ""),
    ]:
        with open(name, "w") as handle:
            handle.write(content)

    caplog.set_level("INFO", logger="radtransfer.data")
    _assert_same(_read(image_set, **_disk(tmp_path)), uncached)
    assert "filling the disk cache" in caplog.text
    assert os.path.exists(f"{other}.owner") and os.path.exists(tf_lockfile)  # may still be writing: kept

    old = time.time() - cache_module.STALE_AFTER_S - 60
    for name in (tf_lockfile, tf_partial, f"{other}.owner", f"{other}_0.lockfile"):
        os.utime(name, (old, old))
    os.remove(f"{path}.index")
    _assert_same(_read(image_set, **_disk(tmp_path)), uncached)
    assert not list(tmp_path.glob("*lockfile")) and not list(tmp_path.glob("*.tmp-*"))
    assert not os.path.exists(tf_partial)
