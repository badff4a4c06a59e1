"""`convscope doctor`: the summary, --json, the report's files, and the exit status (0 clean or warnings only,
1 problems, 2 unreadable data)."""

import json
import shutil

from helpers import photo_folder as clean_folder

from convscope.cli import main


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_a_clean_folder_exits_0_and_writes_its_report(tmp_path, capsys):
    root = clean_folder(tmp_path / "photos")
    status, out, err = run(capsys, "doctor", str(root), "--out", str(tmp_path / "report"))
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{root}: image folders (train/ test/), classification, 3 classes"
    assert lines[1].split() == ["train", "36", "images", "in", "train/;", "12", "images", "per", "class"]
    assert any(line.startswith("nothing found in ") for line in lines)
    assert lines[-1] == f"report: {tmp_path / 'report' / 'report.html'}"
    saved = json.loads((tmp_path / "report" / "doctor.json").read_text())
    assert saved["exit_code"] == 0 and saved["findings"] == []
    assert (tmp_path / "report" / "report.html").stat().st_size > 0


def test_problems_exit_1_with_each_finding_and_its_first_images(tmp_path, capsys):
    root = clean_folder(tmp_path / "photos")
    shutil.copy(root / "train/bear/003.jpg", root / "test/bear/copy.jpg")
    shutil.copy(root / "train/cloud/001.jpg", root / "train/cloud/again.jpg")
    (root / "train/apple/empty.jpg").write_bytes(b"")
    status, out, err = run(capsys, "doctor", str(root), "--out", str(tmp_path / "r"), "--examples", "1")
    assert status == 1
    assert err.strip() == f"convscope: 2 problem(s) found in {root}"
    assert "problem: 1 file(s) cannot be read as images: zero bytes (1)" in out
    assert "    train/apple/empty.jpg (apple): zero bytes" in out
    assert "    test/bear/copy.jpg (bear) ↔ train/bear/003.jpg (bear): same bytes" in out
    assert "warning: 1 exact duplicate pair(s) within a split" in out
    assert "2 problem(s), 1 warning(s) in " in out


def test_json_holds_every_finding(tmp_path, capsys):
    root = clean_folder(tmp_path / "photos")
    shutil.copy(root / "train/bear/003.jpg", root / "test/bear/copy.jpg")
    status, out, _ = run(capsys, "doctor", str(root), "--json", "--out", str(tmp_path / "r"))
    doc = json.loads(out)
    assert status == 1 and doc["exit_code"] == 1
    (leak,) = doc["findings"]
    assert (leak["kind"], leak["count"], leak["serious"]) == ("leak", 1, True)
    assert leak["examples"][0]["other"] == "train/bear/003.jpg"
    assert [s["name"] for s in doc["splits"]] == ["train", "test"]


def test_data_that_cannot_be_read_exits_2_and_json_says_why(tmp_path, capsys):
    status, out, err = run(capsys, "doctor", str(tmp_path / "missing"), "--json", "--out", str(tmp_path / "r"))
    assert status == 2
    assert json.loads(out) == {
        "error": f"{tmp_path / 'missing'}: no such file or folder; expected an image folder, "
        "a detection data set or one of fashion-mnist, mnist, cifar10, cifar100"
    }
    assert err.startswith("convscope: error: ") and err.count("\n") == 1
    assert not (tmp_path / "r" / "report.html").exists()


def test_the_report_is_never_written_into_the_data(tmp_path, capsys, monkeypatch):
    root = clean_folder(tmp_path / "photos")
    status, _, err = run(capsys, "doctor", str(root), "--out", str(root / "train" / "report"))
    assert status == 2 and "inside the data set" in err and "give --out a folder outside it" in err
    monkeypatch.chdir(root)  # the default, doctor/NAME, would be inside it too
    status, _, err = run(capsys, "doctor", ".")
    assert status == 2 and err.startswith("convscope: error: doctor/photos: inside the data set .;")
    assert sorted(p.name for p in root.iterdir()) == ["test", "train"]


def test_examples_must_be_a_count(tmp_path, capsys):
    root = clean_folder(tmp_path / "photos")
    try:
        status = main(["doctor", str(root), "--examples", "-1"])
    except SystemExit as stop:  # argparse's usage error
        status = stop.code
    assert status == 2 and "--examples" in capsys.readouterr().err
