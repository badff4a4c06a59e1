"""Keras side of the benchmarks, run in bench/.venv-keras by keras_env.run_worker: `python keras_worker.py JSON`.

Only numpy and TensorFlow are imported here (convscope is not installed in that venv). The JSON argument names a
task ("throughput" or "fashion") and its settings; the result is one JSON line on stdout (Keras' own output goes
to stderr). Threads: intra-op = the benchmark's --threads, inter-op = 1; TF_ENABLE_ONEDNN_OPTS is TensorFlow's
default.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

STARTED = time.time()


def tutorial_cnn(keras, input_shape: tuple[int, int, int]):
    """The TensorFlow CNN tutorial net (convscope's cifar-3conv): conv32-pool-conv64-pool-conv64-dense64-dense10."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10),
        ]
    )


def _epoch_times(keras, launched: float):
    """A Keras callback that keeps, per epoch, the seconds of training and of validation, and the logs."""

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows: list[dict] = []
            self.t_epoch = self.t_test = self.test_seconds = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.t_epoch, self.t_test, self.test_seconds = time.perf_counter(), 0.0, 0.0

        def on_test_begin(self, logs=None):
            self.t_test = time.perf_counter()

        def on_test_end(self, logs=None):
            self.test_seconds = time.perf_counter() - self.t_test

        def on_epoch_end(self, epoch, logs=None):
            train_end = self.t_test or time.perf_counter()  # fit validates after the epoch's batches
            row = {"epoch": epoch + 1, "train_seconds": train_end - self.t_epoch, "eval_seconds": self.test_seconds}
            row |= {k: float(v) for k, v in (logs or {}).items()}
            row["wall_since_launch"] = time.time() - launched
            self.rows.append(row)

    return EpochTimes()


def _test_rows(times) -> list[dict]:
    """The per-epoch rows of an _epoch_times callback whose fit validated on the test images."""
    keep = ("epoch", "train_seconds", "eval_seconds", "wall_since_launch")
    return [
        {k: r[k] for k in keep} | {"test_acc": r.get("val_accuracy"), "train_acc": r.get("accuracy")}
        for r in times.rows
    ]


def _compile_like_the_tutorial(keras, model) -> None:
    """Adam with its defaults, cross-entropy on logits, accuracy: the tutorial's compile()."""
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def _setup(threads: int, seed: int):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    keras.utils.set_random_seed(seed)
    return tf, keras


def throughput(args: dict) -> dict:
    """model.fit on the benchmark's synthetic 32×32×3 images (float32 in [0, 1]); seconds of each epoch."""
    tf, keras = _setup(args["threads"], args.get("seed", 0))
    x = np.load(args["images"]).astype(np.float32) / 255.0  # N×32×32×3
    y = np.load(args["labels"]).astype(np.int64)
    model = tutorial_cnn(keras, x.shape[1:])
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.001),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    times = _epoch_times(keras, args.get("launched", STARTED))
    model.fit(x, y, batch_size=args["batch_size"], epochs=args["epochs"], shuffle=True, verbose=0, callbacks=[times])
    return {
        "engine": "keras",
        "images": len(x),
        "epoch_seconds": [r["train_seconds"] for r in times.rows],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (TensorFlow's default: on)"),
    }


def _idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def _fashion(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST from its IDX files, as the tutorials' `fashion_mnist.load_data()` returns it (N×28×28 uint8)."""
    images = _idx(folder / f"{split}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    labels = _idx(folder / f"{split}-labels-idx1-ubyte.gz", 8).astype(np.int64)
    return images, labels


def fashion(args: dict) -> dict:
    """The tutorial recipe on Fashion-MNIST: inputs /255, Adam defaults, batch 32, validation on the test images."""
    launched = args.get("launched", STARTED)
    tf, keras = _setup(args["threads"], args.get("seed", 0))
    imported = time.time()
    folder = Path(args["data_dir"])
    (x_train, y_train), (x_test, y_test) = _fashion(folder, "train"), _fashion(folder, "t10k")
    if args.get("train_limit"):
        x_train, y_train = x_train[: args["train_limit"]], y_train[: args["train_limit"]]
    if args.get("test_limit"):
        x_test, y_test = x_test[: args["test_limit"]], y_test[: args["test_limit"]]
    x_train = (x_train / 255.0)[..., None].astype(np.float32)
    x_test = (x_test / 255.0)[..., None].astype(np.float32)
    loaded = time.time()
    model = tutorial_cnn(keras, (28, 28, 1))
    _compile_like_the_tutorial(keras, model)
    times = _epoch_times(keras, launched)
    fit_started = time.time()
    model.fit(
        x_train,
        y_train,
        batch_size=args.get("batch_size", 32),
        epochs=args["epochs"],
        validation_data=(x_test, y_test),
        verbose=0,
        callbacks=[times],
    )
    return {
        "engine": "keras",
        "train_images": len(x_train),
        "test_images": len(x_test),
        "seconds_to_import": imported - launched,
        "seconds_to_load_data": loaded - imported,
        "seconds_to_build": fit_started - loaded,
        "epochs": _test_rows(times),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def cifar_folder(args: dict) -> dict:
    """The TensorFlow CNN tutorial on an image folder as its users read one: `image_dataset_from_directory` (train/
    and test/, 32×32, batch 32, shuffled), a Rescaling(1/255) layer in front of the tutorial net, Adam defaults,
    `epochs` epochs validated on the test folder (test accuracy after each epoch, as the tutorial plots it)."""
    launched = args.get("launched", STARTED)
    tf, keras = _setup(args["threads"], args.get("seed", 0))
    imported = time.time()
    folder = Path(args["folder"])
    common = {"image_size": (32, 32), "batch_size": args.get("batch_size", 32), "seed": args.get("seed", 0)}
    train = keras.utils.image_dataset_from_directory(folder / "train", shuffle=True, **common)
    test = keras.utils.image_dataset_from_directory(folder / "test", shuffle=False, **common)
    model = keras.Sequential(
        [keras.Input(shape=(32, 32, 3)), keras.layers.Rescaling(1.0 / 255), tutorial_cnn(keras, (32, 32, 3))]
    )
    _compile_like_the_tutorial(keras, model)
    times = _epoch_times(keras, launched)
    built = time.time()
    model.fit(train, epochs=args["epochs"], validation_data=test, verbose=0, callbacks=[times])
    return {
        "engine": "keras",
        "seconds_to_import": imported - launched,
        "seconds_to_build": built - imported,  # image_dataset_from_directory lists the files; decoding is per epoch
        "epochs": _test_rows(times),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def main() -> None:
    args = json.loads(sys.argv[1])
    out = sys.stdout
    sys.stdout = sys.stderr  # whatever Keras prints must not mix with the JSON line
    result = {"throughput": throughput, "fashion": fashion, "cifar_folder": cifar_folder}[args["task"]](args)
    result["worker_seconds"] = time.time() - STARTED
    print(json.dumps(result), file=out, flush=True)


if __name__ == "__main__":
    main()
