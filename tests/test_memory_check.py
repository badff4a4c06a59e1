"""Specs that need absurd memory: absolute bounds in shapes.infer (whatever the machine) and the training estimate
of convscope.memory (against this machine's memory), both pure Python and before any tensor exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from convscope import memory
from convscope.errors import SpecError
from convscope.memory import available_memory, check_training_memory, training_memory
from convscope.shapes import MAX_LAYER_PARAMS, infer
from convscope.spec import Conv, Dense, GlobalPool, NetSpec, Pool, load_spec
from convscope.summary import human_bytes

CASES = (Path(__file__).resolve().parents[1] / "../shared/cases/specs").resolve()
needs_cases = pytest.mark.skipif(not CASES.is_dir(), reason=f"{CASES} (the shared case files) is not here")


def net(*layers, input="28x28x1", name="net") -> NetSpec:
    return NetSpec(input=input, layers=layers, name=name)


def test_a_layer_with_more_than_2_31_parameters_is_a_spec_error_naming_it():
    with pytest.raises(SpecError) as err:
        infer(net(Conv(8, 3, padding="same", name="big"), GlobalPool(), Dense(2**28)))
    assert err.value.layer == 3
    assert str(err.value) == (
        "layer 3 (dense 268435456): dense1 would have 2,415,919,104 parameters (9.0 GiB of float32), more than "
        "the 2,147,483,648 one layer may have. Received input 8 after layer 2 (global_pool avg)."
    )
    # exactly 2³¹ is allowed: a bias-free dense layer of 2³¹ units on one channel
    report = infer(net(GlobalPool(), Dense(MAX_LAYER_PARAMS, bias=False)))
    assert report.layers[1].params == MAX_LAYER_PARAMS


def test_a_feature_map_of_more_than_2_31_values_is_a_spec_error():
    with pytest.raises(SpecError) as err:
        infer(net(Conv(2**22, 1)))  # 28·28·4 194 304 = 3 288 334 336 values
    assert str(err.value) == (
        "layer 1 (conv 1×1, stride 1, valid): conv1 would output 28×28×4194304 = 3,288,334,336 values per image "
        "(12.2 GiB of float32), more than the 2,147,483,648 one feature map may have. Received the network input "
        "28×28×1."
    )


def test_a_same_window_far_larger_than_its_input_is_refused_but_a_3x3_on_1x1_is_not():
    assert infer(net(Conv(4, 3, padding="same"), input="1x1x2")).layers[0].output_shape == (1, 1, 4)
    assert infer(net(Conv(4, 57, padding="same"))).layers[0].params == 57 * 57 * 4 + 4  # 2·28 + 1: allowed
    with pytest.raises(SpecError, match=r"conv1's window of 58 rows is far larger than the input's 28: with "):
        infer(net(Conv(4, 58, padding="same")))


def test_padding_that_makes_a_huge_input_is_refused():
    with pytest.raises(SpecError, match=r"padding makes the input 200,028×200,028×1, more than the 2,147,483,648"):
        infer(net(Pool("max", 2, padding=100_000)))


def test_the_training_estimate_in_bytes():
    spec = net(Conv(200_000, 3, padding="same"), GlobalPool(), Dense(10), name="huge")
    estimate = training_memory(infer(spec), 128)
    assert estimate.state_bytes == 16 * 4_000_010  # 4 copies × 4 bytes × parameters
    assert estimate.image_bytes == 4 * (784 + 784 * 200_000 + 200_000 + 10) == 628_003_176
    assert estimate.total == 16 * 4_000_010 + 128 * 628_003_176 == 80_448_406_688
    assert estimate.largest.index == 1 and estimate.largest.name == "conv1"
    assert estimate.largest_batch(21 * 2**30) == (21 * 2**30 - 64_000_160) // 628_003_176 == 35
    assert estimate.largest_batch(2**20) == 0


def test_training_that_cannot_fit_is_refused_naming_the_layer_and_the_bytes():
    spec = net(Conv(200_000, 3, padding="same"), GlobalPool(), Dense(10), name="huge")
    assert check_training_memory(spec, 8, available=21 * 2**30).total == 16 * 4_000_010 + 8 * 628_003_176
    with pytest.raises(SpecError) as err:
        check_training_memory(spec, 128, available=21 * 2**30)
    assert err.value.layer == 1
    assert str(err.value) == (
        "huge: training at batch size 128 needs 74.9 GiB (61.0 MiB of weights, gradients and optimizer state + "
        "598.9 MiB of activations per image × 128), 21.0 GiB available; layer 1 (conv1: conv 3×3, stride 1, same) "
        "needs the most (598.1 MiB of output per image, 2,000,000 parameters); the largest batch size that fits is 35"
    )
    with pytest.raises(SpecError, match="not even one image fits$"):
        check_training_memory(spec, 1, available=100 * 2**20)


def test_nothing_known_about_memory_means_no_refusal(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: None)
    spec = net(Conv(200_000, 3, padding="same"), GlobalPool(), Dense(10))
    assert check_training_memory(spec, 4096).batch_size == 4096


def test_available_memory_is_what_proc_meminfo_says_or_less():
    found = available_memory()
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        pytest.skip("no /proc/meminfo on this system")
    line = next(row for row in meminfo.read_text().splitlines() if row.startswith("MemAvailable:"))
    said = int(line.split()[1]) * 1024
    assert found is not None and 0 < found <= said * 1.05  # it moves between the two reads; a cgroup may lower it


def test_human_bytes():
    assert [human_bytes(n) for n in (512, 1536, 5 * 2**20, 80_448_406_688, 3 * 2**40)] == [
        "512 B",
        "1.5 KiB",
        "5.0 MiB",
        "74.9 GiB",
        "3.0 TiB",
    ]
    assert human_bytes(193536, significant=3) == "189 KiB"  # as the summary and export show sizes


@needs_cases
def test_the_shared_case_specs():
    with pytest.raises(SpecError, match=r"conv1 would have 10,000,000,000 parameters \(37.3 GiB of float32\)"):
        infer(load_spec(CASES / "hugefilters.yaml"))
    with pytest.raises(SpecError, match=r"conv1's window of 99,999,999,999,999,999,999 rows is far larger"):
        infer(load_spec(CASES / "hugesize.yaml"))
    bigact = infer(load_spec(CASES / "bigact.yaml"))  # sound in itself: only this machine may be too small
    assert training_memory(bigact, 128).total == 80_448_406_688
    with pytest.raises(SpecError, match=r"needs 74.9 GiB .*, 21.0 GiB available; layer 1 \(conv1: conv 3×3"):
        check_training_memory(bigact, 128, available=21 * 2**30, name="bigact")
