"""What results show in a notebook: a line of their own as text (not a dataclass dump of their arrays), and a table
or a picture where they have one. (tests/test_notebooks.py sees them in real notebooks; these need no data.)"""

from pathlib import Path

import numpy as np
import pytest

from convscope.builder import build
from convscope.detect.predict import Found
from convscope.inspect.filters import filter_weights
from convscope.inspect.gradcam import GradCam
from convscope.presets import get_preset


def test_detection_metrics_show_their_maps_and_each_class():
    pytest.importorskip("pycocotools")
    from convscope.detect.metrics import coco_evaluate

    truth = [(np.array([[10, 10, 40, 40]], np.float32), np.array([1]))]
    found = [(np.array([[10, 10, 40, 40]], np.float32), np.array([0.9]), np.array([1]))]
    metrics = coco_evaluate(truth, found, ["cat", "dog"], (64, 64))
    assert repr(metrics) == "DetectionMetrics(mAP@0.5 1.000, mAP@0.5:0.95 1.000, 1 images)"
    page = metrics._repr_html_()
    assert "<b>mAP@0.5 1.000, mAP@0.5:0.95 1.000</b>" in page and "on 1 images" in page
    assert '<td style="text-align:left">dog</td><td style="text-align:right">1.000</td>' in page
    assert '<td style="text-align:left">cat</td><td style="text-align:right">–</td>' in page  # no cat anywhere: nan
    assert 'alt="precision–recall curves"' in page and "data:image/png;base64," in page


def test_gradcam_and_filters_say_what_they_are_in_one_line():
    cam = GradCam(np.zeros((4, 4), np.float32), np.zeros((2, 2), np.float32), 1, 0.25, "conv2", "dog")
    assert repr(cam) == (
        "GradCam(dog (probability 25.00%), HiResCAM at layer conv2: nothing in layer conv2 raises the score of "
        "class dog: the map is all zero)"
    )
    filters = filter_weights(build(get_preset("lenet5")))
    assert repr(filters) == "FilterWeights(conv1, conv 5×5, stride 1, pad 2, tanh: 6 filters 5×5×1)"


def test_found_objects_list_the_drawn_ones():
    found = Found(
        Path("scene.png"),
        "RGB 128×128 → letterboxed to 128×128",
        np.array([[1, 2, 30, 40], [1, 2, 30, 41], [50, 50, 90, 90]], np.float64),
        np.array([0.9, 0.5, 0.4]),
        ("Bag", "Coat", "Shirt"),
        same_as=np.array([-1, 0, -1]),  # the coat is the bag's object, not drawn
    )
    assert repr(found) == "Found('scene.png': Bag 0.90, Shirt 0.40)"
    assert repr(Found(Path("x.jpg"), "", np.zeros((0, 4)), np.zeros(0), (), error="not an image")) == (
        "Found('x.jpg': not an image)"
    )
