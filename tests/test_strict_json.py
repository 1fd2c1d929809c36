"""Every JSON file radtransfer writes is strict JSON: null where a number is undefined (NaN) or unbounded
(Infinity), which JavaScript's JSON.parse and other strict parsers refuse. The files of real runs, grids and
commands are parsed strictly in tests/test_input_kinds.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from radtransfer.utils.io import dumps_strict, write_json_atomic


def strict_load(text: str):
    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_written_as_null_everywhere_in_a_payload(tmp_path):
    payload = {
        "auc_ci": [math.nan, 0.9],
        "best": math.inf,
        "low": -math.inf,
        "bins": np.array([0.5, np.nan]),
        "n": np.int64(3),
        "ece": np.float32("nan"),
        "flag": np.bool_(True),
        "nested": [{"p": float("nan")}, (np.float64(0.25),)],
        7: "key",
    }
    write_json_atomic(tmp_path / "m.json", payload)
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert strict_load(text) == {
        "auc_ci": [None, 0.9],
        "best": None,
        "low": None,
        "bins": [0.5, None],
        "n": 3,
        "ece": None,
        "flag": True,
        "nested": [{"p": None}, [0.25]],
        "7": "key",
    }
    assert strict_load(dumps_strict(math.nan)) is None


def test_a_run_whose_state_holds_no_best_loss_yet_resumes(tmp_path):
    """state.json writes a best validation loss not yet seen (infinite) as null; resuming reads it as no best."""
    import keras

    import radtransfer as rt

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8), np.arange(16) % 2
    settings = dict(strategy="unfreeze_all", learning_rate=1e-3, batch_size=8, seed=1, verbose=0, run_eagerly=True)
    settings.update(early_stopping=5, reduce_lr=5)
    keras.utils.set_random_seed(0)
    model = rt.build_model("test_tiny", weights=None, num_classes=2, input_shape=(16, 16, 3))

    class StopAtSecondEpoch(keras.callbacks.Callback):  # each epoch is one fit(): a kill after epoch 1
        calls = 0

        def on_train_begin(self, logs=None):
            StopAtSecondEpoch.calls += 1
            if StopAtSecondEpoch.calls == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rt.fine_tune(
            model, (x, y), (x, y), out_dir=tmp_path / "run", epochs=2, callbacks=[StopAtSecondEpoch()], **settings
        )
    state_file = tmp_path / "run" / "state.json"
    state = strict_load(state_file.read_text())
    state["early"]["best"] = state["plateau"]["best"] = None  # as written before any finite validation loss
    state_file.write_text(json.dumps(state))
    result = rt.fine_tune(model, (x, y), (x, y), out_dir=tmp_path / "run", epochs=2, **settings)
    assert len(result.history["loss"]) == 2
    state = strict_load(state_file.read_text())
    assert state["early"]["wait"] == 0 and math.isfinite(state["early"]["best"])
