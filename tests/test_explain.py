import numpy as np
import pytest
from PIL import Image

from convscope import reference
from convscope.cli import main
from convscope.explain import explain_conv, explain_pool, load_filter, load_input, parse_array, walkthrough_text
from convscope.explain_plot import save_walkthrough_png

X = parse_array("1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16")


def test_conv_value_is_the_sum_of_window_times_filter():
    kernel, _ = load_filter("edge-x")
    w = explain_conv(X, kernel, padding="valid", at=(1, 0))
    assert w.window.tolist() == [[5, 6, 7], [9, 10, 11], [13, 14, 15]]
    # 5 − 7 + 2·(9 − 11) + 13 − 15 = −8
    assert w.value == -8 == w.products.sum()
    assert w.output.shape == (2, 2)
    np.testing.assert_array_equal(w.output, reference.conv2d(X[:, :, None], kernel[:, :, None, None])[:, :, 0])


def test_same_padding_with_stride_two_puts_the_extra_cell_bottom_right():
    kernel, _ = load_filter("identity")
    w = explain_conv(X, kernel, stride=2, padding="same", at=(1, 1))
    assert w.pads == (0, 1, 0, 1)  # total 1 per axis: TensorFlow puts it after
    assert w.corner == (2, 2)
    assert w.is_padding.tolist() == [[False, False, True], [False, False, True], [True, True, True]]
    assert w.value == 16  # the identity filter copies the window's centre, input (3, 3)
    assert "size: ⌈4/2⌉ = 2" in walkthrough_text(w)


def test_pools_never_let_padding_win_and_averages_leave_it_out():
    assert explain_pool(X, "min", 3, 2, "same", at=(1, 1)).value == 11  # of 11 12 15 16 (+inf padding)
    assert explain_pool(-X, "max", 3, 2, "same", at=(1, 1)).value == -11  # of −11 −12 −15 −16 (−inf padding)
    avg = explain_pool(X, "avg", 3, 2, "same", at=(1, 1))
    assert avg.value == (11 + 12 + 15 + 16) / 4
    assert "mean of the 4 real values (padding left out) = 54/4 = 13.5" in walkthrough_text(avg)


def test_a_real_photo_is_turned_gray_and_resized():
    x, source = load_input("chelsea", None, (32, 32))
    assert x.shape == (32, 32) and 0 <= x.min() < x.max() <= 255
    assert source == "chelsea.png (RGB 451×300 → gray, values 0–255, resized to 32×32)"
    kernel, name = load_filter("sharpen")
    w = explain_conv(x, kernel, padding=1, source=source, filter_name=name)
    assert w.output.shape == (32, 32) and w.at == (16, 16)
    assert w.value == pytest.approx(float((w.window * kernel).sum()))


def test_the_png_is_drawn(tmp_path):
    x, source = load_input("chelsea", None, (16, 16))
    w = explain_conv(x, load_filter("edge-y")[0], stride=2, padding="same", source=source, filter_name="edge-y")
    path = save_walkthrough_png(w, tmp_path / "walk.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (1600, 660)
        pixels = np.asarray(img.convert("RGB"), dtype=np.float64)
    assert pixels.std() > 20  # a real picture, not a blank canvas
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    assert red.sum() > 200  # the window outline and the output cell are drawn in red


def test_cli_walkthrough_of_an_array(capsys):
    argv = ["explain", "pool", "--array", "1 2 3; 4 5 6; 7 8 9", "--kind", "avg", "--padding", "same", "--at", "0,0"]
    status = main(argv)
    out = capsys.readouterr().out
    assert status == 0
    assert out.splitlines()[0] == "explain pool avg 2×2, same"
    assert "mean of the 4 real values (padding left out) = 12/4 = 3" in out  # 1 + 2 + 4 + 5
    assert "output feature map: 2×2×1   size: ⌈3/2⌉ = 2" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explain", "conv", "--at", "99,2"], "output position (row 99, column 2) is outside the 30×30 output map"),
        (["explain", "conv", "--filter", "sobel"], "unknown filter 'sobel'. Named filters: edge-x"),
        (["explain", "conv", "--filter", "1 2; 3"], "--filter: every row needs the same number of values"),
        (["explain", "pool", "--array", "1 2; 3 4", "--size", "3"], "pool max 3×3: input is 2×2×1, the window needs"),
        (["explain", "conv", "--image", "no-such.png"], "no-such.png: no such image file"),
        (["explain", "conv", "--padding", "full"], "--padding must be valid, same, an integer"),
        (["explain", "conv", "--at", "a,b"], "--at must be ROW,COLUMN"),
    ],
)
def test_cli_errors_are_one_line(capsys, argv, message):
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and message in err


def test_a_file_that_is_not_an_image_is_refused(tmp_path, capsys):
    fake = tmp_path / "cat.png"
    fake.write_text("not a picture")
    assert main(["explain", "conv", "--image", str(fake)]) == 2
    assert f"{fake}: not an image in an allowed format" in capsys.readouterr().err
    assert fake.read_text() == "not a picture"  # never modified
