"""Keras' layer names: the TensorFlow CNN tutorial, written with convscope, is the cifar-3conv preset; what convscope
cannot do the same way is one SpecError line naming the layer and the argument."""

import pytest

from convscope import BatchNorm, Conv, Dense, Dropout, Flatten, GlobalPool, Input, Pool, SpecError, infer
from convscope import keras_names as layers
from convscope.keras_names import Sequential
from convscope.presets import get_preset


def tutorial():
    """The tutorial's lines as they are, but for `model = model.add(...)` (a spec never changes)."""
    model = Sequential()
    model = model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(32, 32, 3)))
    model = model.add(layers.MaxPooling2D((2, 2)))
    model = model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model = model.add(layers.MaxPooling2D((2, 2)))
    model = model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model = model.add(layers.Flatten())
    model = model.add(layers.Dense(64, activation="relu"))
    model = model.add(layers.Dense(10))
    return model


def test_the_tensorflow_cnn_tutorial_is_the_cifar_3conv_preset():
    model, preset = tutorial(), get_preset("cifar-3conv")
    assert model.layers == preset.layers and model.input == (32, 32, 3)
    ours, theirs = infer(model), infer(preset)
    assert ours.params == theirs.params == 122_570
    assert [i.output_shape for i in ours.layers] == [i.output_shape for i in theirs.layers]
    assert [i.params for i in ours.layers] == [896, 0, 18496, 0, 36928, 0, 65600, 650]  # Keras' model.summary()


def test_the_tutorial_as_one_list():
    model = Sequential(
        [
            layers.Conv2D(32, (3, 3), activation="relu", input_shape=(32, 32, 3)),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10),
        ]
    )
    assert model == tutorial()


def test_each_alias_makes_the_convscope_layer_of_the_same_meaning():
    assert layers.Conv2D(8, 3) == Conv(8, 3, activation="none")  # Keras: no activation unless given
    assert layers.Conv2D(8, (3, 5), strides=2, padding="SAME", use_bias=False, name="c") == Conv(
        8, (3, 5), stride=2, padding="same", activation="none", bias=False, name="c"
    )
    assert layers.Conv2D(8, 3, activation="swish", data_format="channels_last", dilation_rate=(1, 1)) == Conv(
        8, 3, activation="silu"
    )
    assert layers.MaxPooling2D() == Pool("max", 2)
    assert layers.AveragePooling2D(3, strides=1, padding="same") == Pool("avg", 3, stride=1, padding="same")
    assert layers.GlobalAveragePooling2D() == GlobalPool("avg")
    assert layers.GlobalMaxPooling2D() == GlobalPool("max")
    assert layers.BatchNormalization() == BatchNorm()
    assert layers.Dense(10) == Dense(10, activation="none")
    assert layers.Dense(64, "relu", False) == Dense(64, activation="relu", bias=False)
    assert layers.Flatten() == Flatten()
    assert layers.Dropout(0.25, seed=None) == Dropout(0.25)
    assert layers.Activation("relu").function == "relu" and layers.Activation("linear").function == "none"
    assert layers.Input is Input


def test_input_shape_on_a_layer_is_the_pair_input_and_layer():
    assert layers.Flatten(input_shape=(28, 28)) == (Input((28, 28, 1)), Flatten())
    mlp = Sequential([layers.Flatten(input_shape=(28, 28)), layers.Dense(128, activation="relu"), layers.Dense(10)])
    assert mlp.input == (28, 28, 1) and infer(mlp).params == 784 * 128 + 128 + 128 * 10 + 10


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: layers.Conv2D(32, 0), "Conv2D: kernel_size must be a positive integer or a pair [h, w] of them. "),
        (lambda: layers.Conv2D(32, 3, strides=(1, 0)), "Conv2D: strides must be a positive integer"),
        (lambda: layers.Conv2D(-1, 3), "Conv2D: filters must be a positive integer. Received: -1"),
        (lambda: layers.Conv2D(32, 3, padding=1), "Conv2D: padding must be 'valid' or 'same'. Received: 1"),
        (lambda: layers.Conv2D(32, 3, use_bias="yes"), "Conv2D: use_bias must be true or false. Received: 'yes'"),
        (lambda: layers.Conv2D(32, 3, dilation_rate=2), "Conv2D: dilation_rate=2 is not supported: convscope's"),
        (lambda: layers.Conv2D(32, 3, kernel_initializer="he_uniform"), "Conv2D: kernel_initializer='he_uniform'"),
        (lambda: layers.Conv2D(32, 3, data_format="channels_first"), "are H×W×C, channels last"),
        (lambda: layers.Conv2D(32, 3, activation="selu"), "Conv2D: activation must be None or a name: 'linear', "),
        (lambda: layers.Conv2D(32, 3, activation=max), "Received: <built-in function max>"),
        (lambda: layers.Conv2D(32, 3, input_shape=(32, 32, 3, 1)), "Conv2D: input_shape must be H×W×C"),
        (lambda: layers.Dense(10, activation="softmax"), "Dense: activation 'softmax' is not convscope's: convscope"),
        (lambda: layers.Dense(10, activation="leaky_relu"), "negative slope of 0.2, convscope's 0.01"),
        (lambda: layers.Dense(0), "Dense: units must be a positive integer. Received: 0"),
        (lambda: layers.MaxPooling2D(0), "MaxPooling2D: pool_size must be a positive integer"),
        (lambda: layers.MaxPooling2D(2, padding="full"), "MaxPooling2D: padding must be 'valid' or 'same'"),
        (lambda: layers.GlobalAveragePooling2D(keepdims=True), "GlobalAveragePooling2D: keepdims=True is not"),
        (lambda: layers.BatchNormalization(momentum=0.9), "BatchNormalization: momentum=0.9 is not supported"),
        (lambda: layers.Dropout(1.5), "Dropout: rate must be a number in [0, 1). Received: 1.5"),
        (lambda: layers.Activation("softmax"), "Activation: activation 'softmax' is not convscope's"),
        (lambda: layers.Flatten(name="two words"), "Flatten: name must be a word of letters"),
        (lambda: layers.Rescaling(1.0 / 255), "Rescaling: convscope has no rescaling layer: it scales images to"),
    ],
)
def test_a_bad_argument_is_one_line_naming_the_layer_and_the_argument(make, message):
    with pytest.raises(SpecError) as err:
        make()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_rescaling_is_refused_in_a_tutorials_first_line():
    with pytest.raises(SpecError, match="give its input_shape to Sequential or the next layer"):
        Sequential([layers.Rescaling(1.0 / 255, input_shape=(180, 180, 3)), layers.Conv2D(16, 3)])
