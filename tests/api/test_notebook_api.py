"""convscope.train / load_run / Run as a notebook uses them: arrays in, a Run out whose verbs keep the model loaded,
history in Keras' names, pictures that display (PNG) and tables (HTML), and a cell that can be run twice."""

import inspect
from dataclasses import fields

import numpy as np
import pytest
from PIL import Image

import convscope
from convscope.api.run import Report, Run
from convscope.classify.predict import Prediction
from convscope.config import TrainConfig
from convscope.show import Picture

PNG = b"\x89PNG\r\n\x1a\n"


def stripes(n: int = 300, seed: int = 0):
    """n gray 28×28 images of 3 classes a network tells apart in two epochs: noise, a white top half, a black left
    half."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = np.arange(n) % 3
    x[y == 1, :14] = 255
    x[y == 2, :, :14] = 0
    return x, y


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    x, y = stripes()
    out = tmp_path_factory.mktemp("api") / "run"
    spec = convscope.presets.get_preset("fashion-fast")
    return convscope.train(
        spec,
        (x / 255.0, y),
        validation_data=stripes(60, seed=1),
        classes=["noise", "top", "left"],
        epochs=2,
        out=str(out),
        report=False,  # written by test_load_run_gives_the_same_object's run.report()
        verbose=0,
    )


def test_train_takes_arrays_and_returns_a_run(run):
    assert isinstance(run, Run)
    assert run.config.model == "fashion-fast"  # the spec's name, recorded in config.yaml
    assert run.config.data.endswith(".npz") and run.data.classes == ("noise", "top", "left")
    assert list(run.history) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
    assert len(run.history["loss"]) == 2 and run.history["loss"][1] < run.history["loss"][0]
    assert run.results()["test_images"] == 60  # no test_data: tested on validation_data, as the tutorial does
    assert run.status == "finished" and run.headline().startswith("test accuracy ")


def test_the_model_is_loaded_once_and_predicts_any_kind_of_image(run):
    x, y = stripes(6, seed=2)
    one = run.predict(x[1])
    assert isinstance(one, Prediction) and one.top[0][0] == "top" and len(one.top) == 3
    model = run.loaded.model
    many = run.predict(x, top_k=1)
    assert [p.top[0][0] for p in many] == ["noise", "top", "left"] * 2
    assert run.loaded.model is model  # kept, not read again
    photo = run.predict("chelsea")  # a sample photo's name, like `convscope predict`
    assert photo.conversion == "RGB 451×300 → gray 28×28"
    pil = run.predict(Image.fromarray(x[2]))
    assert pil.top[0][0] == "left" and pil.path == "PIL image"
    assert run.predict([x[0], x[1]])[1].top == one.top
    assert many._repr_png_().startswith(PNG) and one._repr_png_().startswith(PNG)


def test_evaluate_reads_what_training_saved(run):
    saved = run.evaluate()
    assert (run.path / "evaluation.json").is_file()
    assert saved.accuracy == pytest.approx(run.results()["test_acc"], abs=1e-6)
    assert saved.confusion.sum() == 60
    page = saved._repr_html_()
    assert "test accuracy" in page and "<table>" in page and "data:image/png;base64," in page


def test_pictures_display_and_save(run, tmp_path):
    x, _ = stripes(3, seed=3)
    curves = run.plot()
    assert isinstance(curves, Picture) and len(curves.axes) == 2
    assert curves.save(tmp_path / "curves.png").read_bytes().startswith(PNG)
    maps = run.featuremaps(x[1], "conv1")
    assert maps.names() == ["conv1"] and maps.layers[0].shape[2] == 32
    assert maps._repr_html_().count("<img") == 1
    cam = run.gradcam(x[1], cls="TOP")  # a class name in any case
    assert cam.class_name == "top" and cam.heatmap.shape == (28, 28)
    assert cam._repr_png_().startswith(PNG)
    filters = run.filters()
    assert filters.name == "conv1" and filters._repr_png_().startswith(PNG)
    walk = run.explain(x[1], at=(3, 3))
    assert "conv1 filter 0" in repr(walk) and walk._repr_html_().startswith("<pre ")
    assert walk.save(tmp_path / "walk.png").stat().st_size > 1000
    html = run._repr_html_()
    assert "test accuracy" in html and "val_accuracy" in html and "<img" in html


def test_patterns_and_the_top_level_functions_take_a_run_folder(run, tmp_path):
    x, _ = stripes(2, seed=4)
    image = tmp_path / "top.png"
    Image.fromarray(x[1]).save(image)
    patterns = run.patterns("conv1", filters=[0, 1], steps=4, size=16)
    assert patterns.images.shape == (2, 16, 16, 1) and patterns._repr_png_().startswith(PNG)
    maps = convscope.featuremaps(str(run.path), image, "pool1")
    assert maps.names() == ["pool1"] and maps.conversion == "L 28×28 → gray 28×28"
    np.testing.assert_array_equal(maps.layers[0].maps, run.featuremaps(x[1], "pool1").layers[0].maps)
    cam = convscope.gradcam(run.path, image, cls="top")
    assert cam.class_name == "top" and cam.figure().axes


def test_errors_name_the_argument(run):
    x, _ = stripes(2)
    with pytest.raises(convscope.DataError, match="no class named 'cat'"):
        run.gradcam(x[0], cls="cat")
    with pytest.raises(convscope.DataError, match="'dense1' has no feature maps"):
        run.featuremaps(x[0], "dense1")
    with pytest.raises(convscope.DataError, match=r"image: shape \(1, 28, 28, 2\), dtype uint8"):
        run.predict(np.zeros((28, 28, 2), np.uint8)[None][0][None])


def test_the_same_cell_twice_returns_the_run_and_other_settings_are_refused(run, caplog):
    x, y = stripes()
    settings = dict(validation_data=stripes(60, seed=1), classes=["noise", "top", "left"], out=str(run.path))
    again = convscope.train("fashion-fast", (x / 255.0, y), epochs=2, verbose=0, **settings)
    assert again.path == run.path and again.metrics() == run.metrics()
    assert "already holds this training (finished)" in caplog.text
    with pytest.raises(convscope.CheckpointError, match="its epochs differ.*pass resume=True"):
        convscope.train("fashion-fast", (x / 255.0, y), epochs=3, verbose=0, **settings)
    other = convscope.presets.get_preset("fashion-fast").add(convscope.Dense(3))  # another network, same name
    with pytest.raises(convscope.CheckpointError, match="its network differ"):
        convscope.train(other, (x / 255.0, y), epochs=2, verbose=0, **settings)


def test_load_run_gives_the_same_object(run):
    loaded = convscope.load_run(run.path)
    assert isinstance(loaded, Run) and loaded.history == run.history
    assert repr(loaded).startswith(f"Run('{run.path}': fashion-fast on arrays-")
    report = loaded.report()
    assert isinstance(report, Report) and report.path.name == "report.html"
    assert report._repr_html_().startswith("<iframe srcdoc=")


def test_resume_true_trains_on_and_the_bars_show(tmp_path, capsys):
    x, y = stripes(150)
    out = str(tmp_path / "r")
    first = convscope.train("fashion-fast", (x, y), epochs=1, out=out, verbose=2, report=False)
    printed = capsys.readouterr().out
    assert "epoch 1/1  loss" in printed and "val_accuracy" in printed
    assert f"{first.path}: test accuracy " in printed and ", test loss " in printed
    assert not (first.path / "report.html").exists()  # report=False: written later by run.report()
    longer = convscope.train(epochs=2, out=out, resume=True, verbose=1, report=False)
    captured = capsys.readouterr()
    assert len(longer.history["loss"]) == 2
    assert "epoch 2/2" in captured.err  # tqdm's bar, kept with the epoch's numbers
    with pytest.raises(convscope.ConfigError, match="resume=True continues the run in out="):
        convscope.train(resume=True)
    convscope.train(epochs=3, out=out, resume=True, verbose=0, report=False)
    assert capsys.readouterr() == ("", "")


def test_an_interrupt_says_how_to_resume_in_python(tmp_path, caplog):
    from helpers import StopAt

    x, y = stripes(150)
    out = str(tmp_path / "stopped")
    with pytest.raises(convscope.Interrupted) as stopped:
        convscope.train("fashion-fast", (x, y), epochs=2, out=out, verbose=0, report=False, callbacks=[StopAt(1, 1)])
    assert str(stopped.value).endswith(f"Resume with: convscope.train(out={out!r}, resume=True)")
    stopped_run = convscope.load_run(out)
    assert stopped_run.status == "stopped, resumable" and repr(stopped_run).endswith("stopped, resumable)")
    done = convscope.train(out=out, resume=True, verbose=0, report=False)
    assert done.status == "finished" and len(done.history["loss"]) == 2
    again = convscope.train(out=out, resume=True, verbose=0)  # finished: returned as it is, in Python's words
    assert again.metrics() == done.metrics()
    assert "nothing was changed. To train longer, pass a larger epochs=" in caplog.text


def test_help_lists_every_setting_with_its_default():
    text = convscope.train.__doc__
    parameters = inspect.signature(convscope.train).parameters
    for f in fields(TrainConfig):
        if f.name not in ("model", "data"):
            assert f"    {f.name}={f.default!r}: " in text, f.name
        assert f.name in parameters
    assert parameters["epochs"].default == 8 and parameters["validation_data"].default is None


def test_top_level_names():
    for name in ("transfer", "featuremaps", "gradcam", "load_run", "walkthrough", "train"):
        function = getattr(convscope, name)
        assert inspect.isfunction(function) and function.__doc__, name
    for name in ("Callback", "Run", "Interrupted", "ConfigError", "OutputError", "TrainingError", "DataError"):
        assert inspect.isclass(getattr(convscope, name)) and getattr(convscope, name).__doc__, name
    assert issubclass(convscope.Interrupted, convscope.ConvscopeError)


def test_gradcam_explains_the_class_predict_gives(run):
    x, _ = stripes(12, seed=5)
    for image in x:
        assert run.gradcam(image).class_name == run.predict(image).top[0][0]  # both with mirror averaging


def test_evaluate_takes_arrays_as_keras_does(run):
    x, y = stripes(30, seed=6)
    first, second = run.evaluate(x, y), run.evaluate((x, y.reshape(-1, 1)))
    assert first.confusion.sum() == 30 and np.array_equal(first.confusion, second.confusion)
    assert run.evaluate().confusion.sum() == 60  # the saved evaluation of the run's own test images is kept
    with pytest.raises(
        convscope.DataError, match=r"evaluate x: images are 32×32×1, the model fashion-fast takes 28×28×1"
    ):
        run.evaluate(np.zeros((2, 32, 32), np.uint8), [0, 1])
    with pytest.raises(convscope.DataError, match="evaluate y: shape"):
        run.evaluate(x, y[:3])


def test_small_conveniences(run, tmp_path):
    x, _ = stripes(2, seed=7)
    assert run.patterns(filters=[0], steps=2, size=8).layer == "conv1"  # default: the first conv layer
    assert run.history["epoch"] == [1, 2]
    one = run.featuremaps(x[0], "conv1")
    assert one.save(tmp_path / "conv1.png").is_file()
    with pytest.raises(convscope.DataError, match="2 layers make 2 sheets: give a folder"):
        run.featuremaps(x[0], ["conv1", "pool1"]).save(tmp_path / "both.png")
    assert {"train", "load_run", "transfer", "Run"} <= set(dir(convscope))


def test_what_a_newcomer_gets_wrong_is_one_line_with_advice(tmp_path):
    from convscope import keras_names as layers

    x, y = stripes(30)
    with pytest.raises(convscope.DataError, match="too few to hold out a tenth of each class for testing"):
        convscope.train("fashion-fast", x[:6], y[:6], out=str(tmp_path / "few"), verbose=0)  # Keras' fit(x, y)
    with pytest.raises(convscope.DataError, match="every label is 0; a classifier needs images of at least 2"):
        convscope.train("fashion-fast", x, np.zeros(30, int), verbose=0)
    with pytest.raises(convscope.ConfigError, match=r"a list of 2 layers; make it a network first"):
        convscope.train([layers.Flatten(), layers.Dense(3)], (x, y))
    with pytest.raises(convscope.ConfigError, match="unknown setting 'epoch' \\(did you mean 'epochs'\\?\\)"):
        convscope.train("fashion-fast", (x, y), epoch=3)
    model = convscope.Sequential()
    model.add(layers.Conv2D(8, (3, 3), input_shape=(28, 28, 1)))  # Keras' habit: the new spec is dropped
    with pytest.raises(convscope.SpecError, match=r"add\(\) returns a new spec .* model = model.add\(layer\)"):
        model.add(layers.MaxPooling2D((2, 2)))
    convs = convscope.Sequential([layers.Conv2D(8, (3, 3), input_shape=(28, 28, 1))])
    convs.add(layers.Flatten(), layers.Dense(3))  # dropped too
    with pytest.raises(convscope.SpecError, match=r"it is conv1 \(if you added .* model = model.add\(layer\)\)"):
        convscope.train(convs, (x, y), verbose=0)


def test_the_start_says_what_augmentation_and_test_images_are_used(tmp_path, capsys):
    x, y = stripes(90)
    convscope.train("fashion-fast", (x, y), validation_data=stripes(30, 1), epochs=1, out=str(tmp_path / "a"),
                    verbose=2, report=False)  # fmt: skip
    printed = capsys.readouterr().out
    assert "augmentation: flip,translate=2, test images averaged with their mirror images" in printed
    assert "test numbers on validation_data (no test_data)" in printed
