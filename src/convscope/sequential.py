"""Sequential: a NetSpec written the way Keras code builds a model, layer by layer.

    spec = Sequential([Conv(32, 3), Pool("max"), Flatten(), Dense(10)], input_shape=(28, 28, 1))

    spec = Sequential(name="cifar-3conv")                 # the Keras habit: start empty, then add
    spec = spec.add(Conv2D(32, (3, 3), activation="relu", input_shape=(32, 32, 3)))
    spec = spec.add(MaxPooling2D((2, 2)))
    ...
    spec.summary()

The input shape (H×W×C; an H×W pair is a gray image, H×W×1) comes from `input_shape=`, or an `Input((32, 32, 3))` as
the first item, or `input_shape=` given to the first Keras alias (convscope.keras_names); two different ones are a
SpecError.

Why Sequential() may have no layers. Keras code starts with an empty model and adds to it, so refusing an empty
Sequential() would break the first line a Keras user writes. A NetSpec made any other way (its constructor, a spec
file) still needs at least one layer and an input; only Sequential makes a spec with no layers (and no input) yet.
Such a spec prints as `NetSpec('net', no input shape yet, no layers yet: ...)`, and everything that would use it
(shapes.infer, so summary(), build and train; is_detector; to_dict) refuses it with one SpecError line.

Why `model = model.add(...)`. A NetSpec is a frozen value: it is compared, hashed, saved with a run and shared
between threads, and nothing that holds one can see it change. `add` therefore returns a new spec and the Keras line
`model.add(layer)`, without the assignment, does nothing. That is hard to miss: the spec's one-line form and its
notebook table show the layers it has, an empty one says `spec = spec.add(layer)`, and summary(), build and train
refuse an empty spec with the same words. `add` takes several layers at once, so the whole network can be one call.
"""

from __future__ import annotations

from typing import Any

from convscope.errors import SpecError
from convscope.spec import Input, Layer, NetSpec, parse_input, shown


def Sequential(
    layers: Any = (),
    *,
    input_shape: Any = None,
    name: str = "net",
    description: str = "",
) -> NetSpec:
    """A NetSpec of `layers` in order (a list or tuple of layers; an Input or a Keras alias with input_shape= among
    them sets the input shape), for `input_shape` (H×W×C as a tuple or '32x32x3'; H×W: gray). With no layers: a spec
    to add to (`spec = spec.add(...)`), which cannot be inferred, built or trained before it has some.

    Raises SpecError for `layers` that is not a list or tuple, an item that is not a layer, two different input
    shapes, layers without an input shape, two layers of one name, or a name that is not text.
    """
    layers = () if layers is None else layers  # Keras' default
    if isinstance(layers, Layer | Input) or not isinstance(layers, list | tuple):
        raise SpecError(
            f"Sequential: layers must be a list of layers, e.g. [Conv(32, 3), Pool()]. Received: {shown(layers)}"
        )
    for key, value in (("name", name), ("description", description)):
        if not isinstance(value, str):
            raise SpecError(f"Sequential: {key} must be text. Received: {shown(value)}")
    shape = None if input_shape is None else parse_input(input_shape, "Sequential: input_shape")
    spec = NetSpec(shape, (), name, description, True)
    return spec.add(*layers) if layers else spec
