"""Every --out takes a file or an existing folder and refuses, in one line with exit status 2 and before any work, what
is not convscope's to write: a named pipe, a socket, a path under a regular file, a read-only folder, a file inside a
run folder, and (without --overwrite) an existing file convscope did not write."""

import os
import stat

import pytest
from fault_harness import tmpfs
from helpers import make_folder, train_args

from convscope.cli import main
from convscope.errors import OutputError
from convscope.files import written_by_convscope
from convscope.out_paths import check_file_in_folder, out_file, out_folder, run_folder_above

USER_BYTES = b"a user's own file\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A trained run in RUNS/run, its images in RUNS/images (the commands' data)."""
    runs = tmp_path_factory.mktemp("runs")
    folder = make_folder(runs / "images", per_class=20)
    from convscope.tasks.train import train

    train(model="lenet5", data=str(folder), epochs=1, batch_size=16, threads=1, out=str(runs / "run"), report=False)
    return runs / "run"


@pytest.fixture
def places(tmp_path):
    """A folder, a user's file, a named pipe, a socket and a path under a regular file, all in tmp_path."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "user.png").write_bytes(USER_BYTES)
    os.mkfifo(tmp_path / "pipe")
    os.mknod(tmp_path / "sock", stat.S_IFSOCK | 0o600)  # a socket's file, with no length limit on its path
    return tmp_path


@pytest.fixture
def read_only(tmp_path):
    """A folder on a read-only file system (root ignores file modes, not a read-only mount)."""
    with tmpfs(tmp_path / "read-only", "64k", "ro") as folder:
        yield folder


def _refused(argv, capsys, *words) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert all(word in err for word in words), err
    return err


# ── the checks themselves ───────────────────────────────────────────────────────────────────────────────────────
def test_a_folder_gets_the_default_name_and_a_file_is_itself(places):
    assert out_file(places / "folder", "filters-conv1.png") == places / "folder" / "filters-conv1.png"
    assert out_file(places / "new.png", "filters-conv1.png") == places / "new.png"
    assert out_folder(places / "folder" / "new") == places / "folder" / "new"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("pipe", "is a named pipe (FIFO), not a file convscope may replace"),
        ("sock", "is a socket, not a file convscope may replace"),
        ("user.png/x.png", "user.png is a file, not a folder"),
        ("user.png", "exists and was not written by convscope; --overwrite replaces it"),
    ],
)
def test_out_file_refuses_what_is_not_convscope_s_to_write(places, name, message):
    with pytest.raises(OutputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        out_file(places / name, "x.png")
    assert (places / "user.png").read_bytes() == USER_BYTES


@pytest.mark.parametrize(
    ("name", "message"),
    [("pipe", "is a named pipe (FIFO); --out takes a folder"), ("user.png", "is a file; --out takes a folder"),
     ("user.png/sub", "user.png is a file, not a folder"), ("sock", "is a socket; --out takes a folder")],
)  # fmt: skip
def test_out_folder_refuses_what_is_not_a_folder(places, name, message):
    with pytest.raises(OutputError) as caught:
        out_folder(places / name)
    assert message in str(caught.value)


def test_overwrite_replaces_a_user_s_file_and_convscope_s_own_file_needs_nothing(places):
    assert out_file(places / "user.png", "x.png", overwrite=True) == places / "user.png"
    from convscope.show import Picture

    Picture(figsize=(1, 1)).save(places / "ours.png")
    assert written_by_convscope(places / "ours.png") and not written_by_convscope(places / "user.png")
    assert out_file(places / "ours.png", "x.png") == places / "ours.png"


def test_a_read_only_folder_is_refused_in_one_line(read_only):
    for check in (lambda: out_file(read_only, "x.png"), lambda: out_folder(read_only / "new")):
        with pytest.raises(OutputError, match=f"{read_only}: cannot write in this folder \\(Read-only file system\\)"):
            check()


def test_inside_a_run_folder_only_the_command_s_own_names_pass(run_dir):
    assert run_folder_above(run_dir / "weights" / "x.png") == run_dir.resolve()
    assert run_folder_above(run_dir) is None  # the folder itself is not inside a run
    check_file_in_folder(run_dir / "filters-conv2.png", run_names=("filters-*",), own_run=run_dir)
    for name in ("config.yaml", "curves.png", "weights/best.safetensors"):
        with pytest.raises(OutputError, match="is inside the run folder"):
            check_file_in_folder(run_dir / name, overwrite=True, run_names=("filters-*",))


# ── the commands ────────────────────────────────────────────────────────────────────────────────────────────────
COMMANDS = {  # a picture or file command: argv before --out, and the name it gives its file in a folder
    "filters": (["filters", "{run}"], "filters-conv1.png"),
    "top-activations": (["top-activations", "{run}", "--layer", "conv1", "--k", "2"], "top-conv1.png"),
    "gradcam": (["gradcam", "{run}", "chelsea"], "gradcam-chelsea.png"),
    "export": (["export", "{run}", "--format", "torchscript"], "model.pt"),
}
FOLDER_COMMANDS = {  # commands whose --out is a folder
    "featuremaps": ["featuremaps", "{run}", "chelsea", "--layer", "conv1"],
    "train": train_args("{images}", "X", epochs=1)[:-2],
    "transfer": ["transfer", "--data", "{images}", "--head-epochs", "1"],
    "detect train": ["detect", "train", "--data", "{images}", "--epochs", "1"],
    "detect predict": ["detect", "predict", "{run}", "chelsea"],
    "detect convert": ["detect", "convert", "{images}", "--to", "coco"],
    "detect make-scenes": ["detect", "make-scenes", "--n", "10"],
}


def _argv(argv, run_dir, out) -> list[str]:
    return [a.format(run=run_dir, images=run_dir.parent / "images") for a in argv] + ["--out", str(out)]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_command_writes_its_default_name_in_a_folder_and_replaces_its_own_output(
    command, run_dir, tmp_path, capsys
):
    argv, name = COMMANDS[command]
    for _ in range(2):  # the second time replaces what the first wrote, silently
        assert main(_argv(argv, run_dir, tmp_path)) == 0
        assert f"{tmp_path / name}" in capsys.readouterr().out
    assert (tmp_path / name).stat().st_size > 1000
    if name.endswith(".png"):
        assert written_by_convscope(tmp_path / name)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_command_refuses_every_bad_out_in_one_line(command, run_dir, places, capsys):
    argv, _ = COMMANDS[command]
    user = places / ("user.pt" if command == "export" else "user.png")
    user.write_bytes(USER_BYTES)
    _refused(_argv(argv, run_dir, places / "pipe"), capsys, "pipe: is a named pipe (FIFO)")
    _refused(_argv(argv, run_dir, places / "sock"), capsys, "sock: is a socket")
    _refused(_argv(argv, run_dir, user / "x.png"), capsys, f"{user.name} is a file, not a folder")
    _refused(_argv(argv, run_dir, run_dir / "config.yaml"), capsys, "is inside the run folder")
    _refused(_argv(argv, run_dir, user), capsys, "exists and was not written by convscope")
    assert user.read_bytes() == USER_BYTES and (run_dir / "config.yaml").stat().st_size > 100
    assert main([*_argv(argv, run_dir, user), "--overwrite"]) == 0
    assert user.read_bytes() != USER_BYTES


def test_a_picture_out_needs_a_picture_suffix(run_dir, tmp_path, capsys):
    _refused(["filters", str(run_dir), "--out", str(tmp_path / "f.yaml")], capsys, "f.yaml: a picture's file name")
    assert not (tmp_path / "f.yaml").exists()


@pytest.mark.parametrize("command", FOLDER_COMMANDS)
def test_a_folder_command_refuses_every_bad_out_in_one_line(command, run_dir, places, capsys):
    argv = FOLDER_COMMANDS[command]
    _refused(_argv(argv, run_dir, places / "pipe"), capsys, "pipe: is a named pipe (FIFO); --out takes a folder")
    _refused(_argv(argv, run_dir, places / "sock"), capsys, "sock: is a socket; --out takes a folder")
    _refused(_argv(argv, run_dir, places / "user.png"), capsys, "user.png: is a file; --out takes a folder")
    _refused(_argv(argv, run_dir, places / "user.png" / "x"), capsys, "user.png is a file, not a folder")
    _refused(_argv(argv, run_dir, run_dir / "weights" / "x"), capsys, "is inside the run folder")
    assert (places / "user.png").read_bytes() == USER_BYTES
    assert sorted(p.name for p in (run_dir / "weights").iterdir()) == ["best.safetensors", "last.safetensors"]


def test_featuremaps_in_a_folder_asks_before_replacing_a_user_s_sheet(run_dir, tmp_path, capsys):
    argv = _argv(FOLDER_COMMANDS["featuremaps"], run_dir, tmp_path)
    (tmp_path / "01-conv1.png").write_bytes(USER_BYTES)
    _refused(argv, capsys, "01-conv1.png: exists and was not written by convscope")
    assert (tmp_path / "01-conv1.png").read_bytes() == USER_BYTES
    assert main([*argv, "--overwrite"]) == 0
    assert main(argv) == 0  # its own sheet now: replaced without asking
    assert written_by_convscope(tmp_path / "01-conv1.png")


@pytest.mark.parametrize("command", ["filters", "export", "train"])
def test_a_read_only_out_is_refused_in_one_line(command, run_dir, read_only, capsys):
    argv = COMMANDS[command][0] if command in COMMANDS else FOLDER_COMMANDS[command]
    out = read_only / "new" if command == "train" else read_only
    _refused(_argv(argv, run_dir, out), capsys, f"{read_only}: cannot write in this folder (Read-only file system)")


# ── another run's folder, links, empty and file-like names ──────────────────────────────────────────────────────
@pytest.fixture
def other_run(tmp_path):
    """Another run's folder (its two marker files) and a link to it, in tmp_path."""
    other = tmp_path / "c3"
    other.mkdir()
    (other / "config.yaml").write_text("train: {}\ndata: {}\n")
    (other / "spec.yaml").write_text("name: other\n")
    (tmp_path / "link").symlink_to(other)
    return other


INTO_ANOTHER_RUN = {  # argv before --out, and where --out points inside the other run (c3), '' for c3 itself
    "filters": (["filters", "{run}"], ""),
    "patterns": (["filters", "{run}", "--patterns", "--steps", "1", "--filters", "0"], ""),
    "gradcam": (["gradcam", "{run}", "chelsea"], ""),
    "top-activations": (["top-activations", "{run}", "--layer", "conv1", "--k", "2"], ""),
    "filters named": (["filters", "{run}"], "filters-conv1.png"),
    "featuremaps": (["featuremaps", "{run}", "chelsea", "--layer", "conv1"], "featuremaps"),
    "detect predict": (["detect", "predict", "{run}", "chelsea"], "detections"),
}


@pytest.mark.parametrize("command", INTO_ANOTHER_RUN)
@pytest.mark.parametrize("through", ["c3", "link"])
def test_one_run_s_outputs_never_go_into_another_run_s_folder(command, through, run_dir, other_run, capsys):
    argv, inside = INTO_ANOTHER_RUN[command]
    out = other_run.parent / through / inside if inside else other_run.parent / through
    _refused(_argv(argv, run_dir, out), capsys, f"is inside the run folder {other_run.resolve()}")
    assert sorted(p.name for p in other_run.iterdir()) == ["config.yaml", "spec.yaml"]


def test_a_run_s_own_pictures_may_go_into_its_own_folder_also_through_a_link(run_dir, tmp_path, capsys):
    (tmp_path / "own").symlink_to(run_dir)
    for out in (run_dir, tmp_path / "own"):
        assert main(["filters", str(run_dir), "--out", str(out)]) == 0
        assert f"{out / 'filters-conv1.png'}" in capsys.readouterr().out
    assert written_by_convscope(run_dir / "filters-conv1.png")
    with pytest.raises(OutputError, match="is inside the run folder"):  # no own run named: no run's folder
        out_file(run_dir, "filters-conv1.png", run_names=("filters-*",))


def test_a_name_without_a_suffix_is_a_folder_made_when_missing(run_dir, tmp_path, capsys):
    assert out_file(tmp_path / "pictures", "filters-conv1.png") == tmp_path / "pictures" / "filters-conv1.png"
    assert main(["filters", str(run_dir), "--out", str(tmp_path / "pictures")]) == 0
    capsys.readouterr()
    assert written_by_convscope(tmp_path / "pictures" / "filters-conv1.png")


@pytest.mark.parametrize("command", ["filters", "featuremaps", "train", "detect convert"])
def test_an_empty_out_is_refused_not_read_as_the_default_place(command, run_dir, capsys):
    argv = COMMANDS[command][0] if command in COMMANDS else FOLDER_COMMANDS[command]
    err = _refused(_argv(argv, run_dir, ""), capsys)
    assert err == "convscope: error: --out: expected a file or folder path, received an empty one\n"
    with pytest.raises(OutputError, match="--out: expected a file or folder path, received an empty one"):
        out_folder("")


@pytest.mark.parametrize("name", ["fm.png", "fm.JPG", "sheets.pdf"])
def test_a_folder_of_pictures_refuses_a_new_name_that_looks_like_a_file(name, run_dir, tmp_path, capsys):
    err = _refused(_argv(FOLDER_COMMANDS["featuremaps"], run_dir, tmp_path / name), capsys)
    assert f"featuremaps writes a folder of pictures; --out {tmp_path / name} looks like a file" in err
    assert not (tmp_path / name).exists()
    (tmp_path / name).mkdir()  # a folder the user made with that name is a folder
    assert out_folder(tmp_path / name, writes="featuremaps writes a folder of pictures") == tmp_path / name


def test_refusals_end_in_one_form(run_dir, places, other_run, capsys):
    for argv in (
        _argv(FOLDER_COMMANDS["featuremaps"], run_dir, places / "pipe"),
        _argv(COMMANDS["filters"][0], run_dir, places / "user.png" / "x.png"),
        _argv(COMMANDS["filters"][0], run_dir, other_run),
        _argv(COMMANDS["export"][0], run_dir, other_run),
    ):
        err = _refused(argv, capsys)
        assert err.endswith("; nothing was changed\n") and "Nothing" not in err, err


# ── a training's --out ──────────────────────────────────────────────────────────────────────────────────────────
def test_train_into_a_run_s_folder_is_told_it_holds_a_run_whatever_pictures_it_holds(run_dir, tmp_path, capsys):
    from convscope.errors import CheckpointError
    from convscope.run import check_not_foreign
    from convscope.show import Picture

    run = tmp_path / "r2"  # a run with its checkpoint, and a gradcam drawn in it (its default place)
    run.mkdir()
    for name in ("config.yaml", "spec.yaml", "checkpoint.safetensors"):
        (run / name).write_bytes((run_dir / name).read_bytes())
    Picture(figsize=(1, 1)).save(run / "gradcam-0.png")
    (run / "notes.txt").write_text("mine")
    argv = FOLDER_COMMANDS["train"]
    err = _refused(_argv(argv, run_dir, run), capsys, f"{run}: already holds a run; resume it with --resume {run}")
    assert "not a convscope run" not in err
    (run / "checkpoint.safetensors").unlink()  # a run that never reached its first checkpoint: the user's file speaks
    with pytest.raises(OutputError, match=r"not a convscope run \(it holds notes.txt\)"):
        check_not_foreign(run)
    (run / "notes.txt").unlink()
    check_not_foreign(run)  # convscope's own picture is not a user's file
    with pytest.raises(CheckpointError, match="already holds a run"):
        check_not_foreign(run_dir)
