"""files.check_regular_file: only regular files (or links to them) go on; nothing else is opened. reader_warnings:
a reader's warnings become log lines, the filters are left as they were."""

import logging
import os
import socket
import threading
import warnings

import pytest
from PIL import Image

import convscope.files as files
from convscope.errors import DataError, SpecError
from convscope.files import check_regular_file, reader_warnings


def test_a_regular_file_and_a_link_to_one_pass(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"data")
    (tmp_path / "link.png").symlink_to(path)
    assert check_regular_file(path) == path
    assert check_regular_file(str(tmp_path / "link.png")) == tmp_path / "link.png"


def test_a_named_pipe_is_refused_without_being_opened(tmp_path):
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    done = []

    def check():
        with pytest.raises(DataError) as info:
            check_regular_file(pipe, "image file")
        done.append(str(info.value))

    thread = threading.Thread(target=check, daemon=True)
    thread.start()
    thread.join(timeout=10)  # opening a FIFO for reading would block until a writer comes: never, here
    assert done == [f"{pipe}: is a named pipe (FIFO), not a regular file; expected an image file (it was not opened)"]


def test_a_link_to_a_named_pipe_is_refused_too(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link.yaml").symlink_to(tmp_path / "pipe")
    with pytest.raises(SpecError, match=r"link\.yaml: is a named pipe \(FIFO\), not a regular file; expected a spec"):
        check_regular_file(tmp_path / "link.yaml", "spec file", SpecError)


def test_devices_sockets_folders_and_missing_paths_are_named(tmp_path):
    with pytest.raises(DataError, match=r"^/dev/null: is a character device, not a regular file; expected an IDX file"):
        check_regular_file("/dev/null", "IDX file")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "s.png"))
        with pytest.raises(DataError, match=r"s\.png: is a socket, not a regular file"):
            check_regular_file(tmp_path / "s.png")
    with pytest.raises(DataError, match=r": is a folder, expected an image file$"):
        check_regular_file(tmp_path, "image file")
    with pytest.raises(DataError, match=r"nope\.png: no such image file$"):
        check_regular_file(tmp_path / "nope.png", "image file")
    with pytest.raises(DataError, match=r"nope\.png/x: no such file$"):
        check_regular_file(tmp_path / "nope.png" / "x")


def test_reader_warnings_become_log_lines_and_the_filters_are_restored(caplog):
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as shown, caplog.at_level(logging.INFO, logger="convscope.files"):
        warnings.simplefilter("always")
        with reader_warnings("photo.tif", files):  # this module stands in for a reader: its own warning is logged
            warnings.warn_explicit("tag 700 is damaged", UserWarning, files.__file__, 1)
        with pytest.raises(Image.DecompressionBombWarning):
            with reader_warnings("big.png", files, errors=(Image.DecompressionBombWarning,)):
                warnings.warn("too many pixels", Image.DecompressionBombWarning, stacklevel=1)
        with reader_warnings("photo.tif", files):  # a warning from elsewhere is shown as it would have been
            warnings.warn("from another module", UserWarning, stacklevel=1)
    assert [str(w.message) for w in shown] == ["from another module"]
    assert [r.getMessage() for r in caplog.records] == ["photo.tif: convscope.files says: tag 700 is damaged"]
    assert warnings.filters == before
