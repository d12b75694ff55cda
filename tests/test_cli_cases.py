"""Every command-line case of the CLI issue: each bad case exits with its status, prints one
error line naming the flag or file, shows no traceback and leaves nothing behind."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nptl.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def listing(directory):
    return sorted(os.path.relpath(os.path.join(d, f), directory)
                  for d, dirs, files in os.walk(directory) for f in files + dirs)


def fails(argv, capsys, status=2, cwd=None):
    """Run ``nptl argv``; check the exit status, that stderr ends with exactly one error line and
    has no traceback, and that ``cwd`` (if given) holds the same files afterwards. Returns the
    error line."""
    before = listing(cwd) if cwd else None
    try:
        rc = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        rc = exit_.code
    err = capsys.readouterr().err
    assert rc == status, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    if cwd:
        assert listing(cwd) == before
    return errors[0]


def test_version_and_help_show_every_option_with_its_meaning(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("nptl 0.")
    from nptl.cli import build_parser

    parser = build_parser()
    assert "``" not in parser.format_help()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, sp in sub.choices.items():
        for action in sp._actions:
            assert action.help, f"nptl {name} {action.option_strings}: no help"
        text = sp.format_help()
        for action in sp._actions:
            if action.option_strings and action.default not in (None, False) and action.type is not None:
                assert "default" in action.help or "(default:" in text, (name, action.option_strings)


def test_argument_ranges_are_checked_when_parsing(capsys):
    assert "--epochs must be >= 1, got 0" in fails(["train", "--epochs", "0"], capsys)
    assert "--scratch-epochs must be >= 1, got -1" in fails(["transfer", "--scratch-epochs", "-1"], capsys)
    assert "--labels-per-class must be >= 1, got 0" in fails(["transfer", "--labels-per-class", "0"], capsys)
    assert "--labels-per-class must be >= 1, got 0" in fails(["train", "--labels-per-class", "0"], capsys)
    assert "--lr must be a number > 0" in fails(["train", "--lr", "nan"], capsys)
    assert "--target-classes must not repeat a class" in fails(["transfer", "--target-classes", "5,5"], capsys)
    assert "--val-fraction must be in [0, 1)" in fails(["train", "--val-fraction", "1"], capsys)


def test_flag_combinations_are_checked_before_any_work(capsys):
    line = fails(["train", "--patience", "2", "--data", "synthetic"], capsys)
    assert "--patience needs --val-fraction" in line
    line = fails(["transfer", "--source-classes", "0,1,2", "--target-classes", "2,3"], capsys)
    assert "share class(es) 2" in line


def test_output_paths_are_checked_before_any_work(tmp_path, capsys):
    (tmp_path / "model.npz").write_bytes(b"x")
    (tmp_path / "adir").mkdir()
    cases = [
        (["train", "--save", str(tmp_path / "model.npz" / "x.npz")], "is not a directory"),
        (["train", "--save", str(tmp_path / "nonexistent" / "m.npz")], "does not exist"),
        (["train", "--json", str(tmp_path / "adir")], "is a directory"),
        (["transfer", "--save", str(tmp_path / "model.npz")], "exists and is not a directory"),
        (["transfer", "--json", str(tmp_path / "adir")], "is a directory"),
        (["evaluate", str(tmp_path / "model.npz"), "--json", str(tmp_path / "adir")], "is a directory"),
    ]
    for argv, expected in cases:
        line = fails(argv + ["--data", "synthetic"], capsys, cwd=tmp_path)
        assert expected in line and ("--save" in line or "--json" in line), line
        assert "data:" not in line


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "text.npz"
    bad.write_text("hello\n")
    env = dict(os.environ, PYTHONPATH=ROOT)
    plain = subprocess.run([sys.executable, "-m", "nptl", "summary", str(bad)], capture_output=True, text=True,
                           env=env)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and len(plain.stderr.splitlines()) == 1
    debug = subprocess.run([sys.executable, "-m", "nptl", "summary", str(bad), "--debug"], capture_output=True,
                           text=True, env=env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_internal_errors_exit_1_with_a_hint(monkeypatch, capsys):
    import nptl.cli.commands.summary as summary

    def broken(args):
        raise AttributeError("'NoneType' object has no attribute 'shape'")

    monkeypatch.setattr(summary, "run", broken)
    line = fails(["summary", "m.npz"], capsys, status=1)
    assert "internal error: AttributeError" in line and "--debug" in line


def test_ctrl_c_exits_130_without_a_traceback(monkeypatch, capsys):
    import nptl.cli.commands.summary as summary

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(summary, "run", interrupted)
    assert main(["summary", "m.npz"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_json_is_strict(tmp_path):
    from nptl.cli.common import write_json

    path = write_json(tmp_path / "r.json", {"val_loss": [float("nan"), 1.0, float("inf")], "t": (1, 2)})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"val_loss": [None, 1.0, None], "t": [1, 2]}
    assert listing(tmp_path) == ["r.json"]


# -- image folders, self-describing checkpoints, evaluate and predict ---------------------------
SHAPES = ("ring", "plus", "square", "x-cross")


def write_colour_folder(directory, n_per_class=10, size=20, classes=SHAPES, seed=0):
    """Generated shapes in a random tint per image, one sub-folder per class (PNG)."""
    import numpy as np
    from PIL import Image

    from nptl.data import SYNTHETIC_CLASSES, make_synthetic

    x, y = make_synthetic(n_per_class=n_per_class, seed=seed, size=size)
    rng = np.random.default_rng(seed)
    for i, (img, label) in enumerate(zip(x, y)):
        name = SYNTHETIC_CLASSES[label]
        if name in classes:
            (directory / name).mkdir(parents=True, exist_ok=True)
            rgb = (img[..., None] * rng.uniform(0.3, 1.0, 3)).astype(np.uint8)
            Image.fromarray(rgb).save(directory / name / f"{i:04d}.png")
    return directory


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    return write_colour_folder(tmp_path_factory.mktemp("colour") / "shapes")


@pytest.fixture(scope="module")
def folder_model(colour_folder, tmp_path_factory):
    """A model trained on the colour folder at 20x20 RGB, and its checkpoint."""
    path = tmp_path_factory.mktemp("model") / "shapes.npz"
    assert main(["train", "--data", str(colour_folder), "--image-size", "20", "--color", "rgb", "--epochs", "1",
                 "--save", str(path), "--quiet"]) == 0
    return path


def test_checkpoints_describe_their_data(folder_model, colour_folder):
    from nptl import io

    info = io.read_metadata(folder_model)["extra"]["data"]
    assert info == {"source": str(colour_folder), "class_names": sorted(SHAPES), "class_ids": [0, 1, 2, 3],
                    "input_shape": [3, 20, 20], "normalization": {"scale": 255, "mean": None, "std": None}}


def test_evaluate_uses_the_checkpoint_data_by_default(folder_model, colour_folder, capsys):
    assert main(["evaluate", str(folder_model)]) == 0
    out, err = capsys.readouterr()
    assert f"data: {colour_folder}: " in err and "of shape (3, 20, 20)" in err  # as trained, not the default data
    assert all(name in out for name in SHAPES) and "macro avg" in out


def test_evaluate_refuses_other_class_names_unless_forced(folder_model, tmp_path, capsys):
    other = write_colour_folder(tmp_path / "other", n_per_class=4, classes=("L shape", "T shape", "blob", "ring"))
    line = fails(["evaluate", str(folder_model), "--data", str(other)], capsys, cwd=tmp_path)
    assert "class names differ" in line and "--force" in line
    assert main(["evaluate", str(folder_model), "--data", str(other), "--force"]) == 0
    err = capsys.readouterr().err
    assert "warning: class names differ" in err
    line = fails(["evaluate", str(folder_model), "--data", "synthetic"], capsys)
    assert "the model takes images of shape (3, 20, 20) (C, H, W), --data synthetic has (1, 28, 28)" in line


def test_evaluate_matches_classes_by_name(folder_model, tmp_path, capsys):
    # the same four classes among others: picked by name, in the model's order
    bigger = write_colour_folder(tmp_path / "bigger", n_per_class=4, classes=SHAPES + ("blob",))
    assert main(["evaluate", str(folder_model), "--data", str(bigger), "--json", str(tmp_path / "ev.json")]) == 0
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert ev["class_ids"] == [1, 2, 3, 4]  # blob is class 0 of the bigger folder
    assert sum(map(sum, ev["confusion_matrix"])) == 4  # one test image per class


def test_predict_files_and_folders(folder_model, colour_folder, tmp_path, capsys):
    out_json = tmp_path / "p.json"
    ring = sorted((colour_folder / "ring").iterdir())[0]
    assert main(["predict", str(folder_model), str(ring), str(colour_folder / "plus"), "--top", "2",
                 "--json", str(out_json)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["file", "class", "probability", "next"]
    n_plus = len(list((colour_folder / "plus").iterdir()))
    assert len(lines) == 1 + 1 + n_plus and lines[1].startswith(str(ring))
    result = json.loads(out_json.read_text())
    assert result["class_names"] == sorted(SHAPES)
    for p in result["predictions"]:
        assert p["class"] in SHAPES and len(p["top"]) == 2 and p["top"][0]["probability"] >= p["top"][1]["probability"]
    assert main(["predict", str(folder_model), str(tmp_path / "none.png")]) == 2
    assert "none.png: no such file" in capsys.readouterr().err


def test_predict_reads_as_trained_gray_for_a_gray_model(tmp_path, colour_folder, capsys):
    from nptl import io
    from nptl.datainfo import checkpoint_extra, data_info
    from nptl.models import seed_cnn

    model = seed_cnn((1, 28, 28), 4, seed=0)
    names = ["cat", "dog", "cow", "owl"]
    io.save(model, tmp_path / "g.npz", extra=checkpoint_extra(data_info("x", names, [0, 1, 2, 3], (1, 28, 28))))
    assert main(["predict", str(tmp_path / "g.npz"), str(colour_folder / "ring")]) == 0
    assert "converted 10 of 10 images to gray" in capsys.readouterr().err  # colour files to the model's grayscale
    line = fails(["evaluate", str(tmp_path / "g.npz"), "--data", "synthetic"], capsys)
    assert "the model has 4 outputs (cat, dog, cow, owl) but --data synthetic gives 10 classes" in line
    assert "pick 4 with --classes" in line


def test_image_folder_options(colour_folder, tmp_path, capsys):
    import shutil

    messy = tmp_path / "messy"
    shutil.copytree(colour_folder, messy)
    from PIL import Image

    first = sorted((messy / "ring").iterdir())[0]
    Image.open(first).convert("L").save(messy / "ring" / "gray.png")
    (messy / "ring" / "notes.txt").write_text("not an image")
    (messy / "plus" / "broken.png").write_bytes(b"not a png")
    line = fails(["train", "--data", str(messy), "--epochs", "1"], capsys)
    assert "broken.png" in line and "--skip-bad-files" in line
    assert main(["train", "--data", str(messy), "--epochs", "1", "--image-size", "24,20", "--skip-bad-files",
                 "--json", str(tmp_path / "r.json"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("notes.txt") == 1 and "ignored 1 file(s)" in err
    assert "skipped" in err and "broken.png" in err and "skipped 1 unreadable file(s)" in err
    assert "converted 1 of 41 images to rgb" in err
    assert "of shape (3, 24, 20)" in err  # auto: colour folder -> rgb
    assert main(["train", "--data", str(messy), "--epochs", "1", "--color", "gray", "--skip-bad-files",
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "converted 40 of 41 images to gray" in err and "of shape (1, 28, 28)" in err
    for flag in (["--image-size", "32"], ["--color", "rgb"], ["--skip-bad-files"]):
        line = fails(["train", "--data", "synthetic"] + flag, capsys)
        assert f"{flag[0]} applies to image folders" in line


def test_labels_per_class_beyond_the_data_is_refused_before_training(colour_folder, capsys):
    line = fails(["transfer", "--data", str(colour_folder), "--source-classes", "0,1", "--target-classes", "2,3",
                  "--labels-per-class", "100000"], capsys)
    assert "--labels-per-class 100000 is more than the" in line
    assert "source:" not in capsys.readouterr().err
    line = fails(["train", "--data", str(colour_folder), "--labels-per-class", "9"], capsys)
    assert "--labels-per-class 9 is more than the 8 training images" in line


def test_transfer_on_a_colour_folder_json_histories_and_checkpoints(colour_folder, tmp_path, capsys):
    from nptl import io

    out = tmp_path / "t.json"
    assert main(["transfer", "--data", str(colour_folder), "--source-classes", "0,1", "--target-classes", "2,3",
                 "--image-size", "20", "--labels-per-class", "3", "--epochs", "2", "--scratch-epochs", "2",
                 "--head-epochs", "3", "--finetune-epochs", "1", "--repeats", "2", "--save", str(tmp_path / "ck"),
                 "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.rstrip().splitlines()[-1].startswith("| finetune |")  # the table comes last
    assert "\r" not in captured.err  # not a terminal: plain lines
    phase_lines = [line for line in captured.err.splitlines() if "ETA" in line]
    assert len(phase_lines) == 1 + 2 * 3  # one per fit call: source, then 3 arms x 2 draws
    assert "draw 2/2 finetune: 1 epochs" in captured.err
    result = json.loads(out.read_text())
    assert len(result["source"]["history"]["loss"]) == 2
    for arm, epochs in (("scratch", 2), ("frozen", 3), ("finetune", 1)):
        for run in result["arms"][arm]["runs"]:
            assert len(run["history"]["loss"]) == epochs and run["history"]["val_loss"] == [None] * epochs
    info = io.read_metadata(tmp_path / "ck" / "finetune.npz")["extra"]["data"]
    assert info["class_ids"] == [2, 3] and info["class_names"] == ["square", "x-cross"]
    assert info["input_shape"] == [3, 20, 20] and info["source"] == str(colour_folder)
    assert io.read_metadata(tmp_path / "ck" / "source.npz")["extra"]["data"]["class_names"] == ["plus", "ring"]


# -- what is written and said -------------------------------------------------------------------
def test_saved_path_is_the_path_written_and_json_is_strict(colour_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", str(colour_folder), "--epochs", "1", "--save", "ckpt", "--json", "r.json",
                 "--quiet"]) == 0
    assert "saved ckpt.npz" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz", "r.json"]
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text and json.loads(text)["history"]["val_loss"] == [None]


def test_a_text_file_as_checkpoint(tmp_path, capsys):
    (tmp_path / "model.npz").write_text("these are not weights\n")
    for argv in (["evaluate", "model.npz"], ["predict", "model.npz", "x.png"], ["summary", "model.npz"]):
        line = fails([argv[0], str(tmp_path / argv[1])] + argv[2:], capsys, cwd=tmp_path)
        assert "not a readable .npz archive" in line and "pickle" not in line


def test_plain_lines_and_verbose(colour_folder, capsys):
    assert main(["train", "--data", str(colour_folder), "--epochs", "2"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "train: 2 epochs" in err and "epoch 1/2:" not in err
    assert main(["train", "--data", str(colour_folder), "--epochs", "2", "--verbose"]) == 0
    err = capsys.readouterr().err
    assert "train epoch 1/2: loss" in err and "train epoch 2/2: loss" in err


def test_terminal_bars_one_per_fit_call_with_an_eta():
    import io as stdio

    from nptl.cli.progress import Console

    stream = stdio.StringIO()
    console = Console([("source", 1, 2), ("draw 1/1 scratch", 2, 1)], stream=stream, tty=True)
    for desc, epochs, steps in (("source ", 1, 2), ("scratch ", 2, 1)):
        console.begin(None, desc, epochs, steps)
        for epoch in range(1, epochs + 1):
            for step in range(1, steps + 1):
                console.step(epoch, step, 0.5, 0.5)
        console.end(None)
    text = stream.getvalue()
    assert "source" in text and "draw 1/1 scratch" in text and "ETA" in text and "run " in text


def test_ctrl_c_saves_the_last_completed_epoch(colour_folder, tmp_path, capsys, monkeypatch):
    from nptl import io
    from nptl.cli.progress import Console

    epoch_hook = Console.epoch
    after_epoch_2 = {}

    def interrupt_in_epoch_3(self, epoch, logs):
        epoch_hook(self, epoch, logs)
        if epoch == 2:
            after_epoch_2.update({p.name: p.value.copy() for p in self.model.parameters()})
            for p in self.model.parameters():  # epoch 3 changes the weights, then Ctrl-C
                p.value[...] += 1.0
            raise KeyboardInterrupt

    monkeypatch.setattr(Console, "epoch", interrupt_in_epoch_3)
    assert main(["train", "--data", str(colour_folder), "--epochs", "5", "--save", str(tmp_path / "m.npz")]) == 130
    err = capsys.readouterr().err
    assert f"saved the model after epoch 2 to {tmp_path / 'm.npz'}" in err and "Traceback" not in err
    assert err.rstrip().endswith("nptl train: interrupted")
    ckpt = io.load_checkpoint(tmp_path / "m.npz")
    assert ckpt.extra["interrupted_after_epoch"] == 2
    for p in ckpt.model.parameters():
        np.testing.assert_array_equal(p.value, after_epoch_2[p.name])
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


def test_ctrl_c_from_the_terminal(colour_folder, tmp_path):
    import signal

    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "nptl", "train", "--data", str(colour_folder), "--epochs", "100000",
                             "--verbose", "--save", str(tmp_path / "m")], stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stderr:  # wait for the first completed epoch
        lines.append(line)
        if "epoch 1/100000:" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=300)
    err = "".join(lines) + rest
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "interrupted: saved the model after epoch" in err and f"to {tmp_path / 'm.npz'}" in err
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


def test_readme_colour_folder_example_runs(tmp_path, monkeypatch, capsys):
    """The README's worked image-folder example, as written (fewer images and epochs)."""
    import re
    import shlex

    text = open(os.path.join(ROOT, "README.md")).read()
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if '"shapes"' in b)
    commands = next(b for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S) if "--data shapes" in b)
    monkeypatch.chdir(tmp_path)
    assert "n_per_class=400" in snippet
    exec(compile(snippet.replace("n_per_class=400", "n_per_class=12"), "README.md", "exec"), {})
    fast = ["--epochs", "1", "--scratch-epochs", "1", "--head-epochs", "1", "--finetune-epochs", "1", "--repeats", "1"]
    for line in commands.strip().splitlines():
        argv = shlex.split(line)
        assert argv[0] == "nptl"
        assert main(argv[1:] + (fast if argv[1] == "transfer" else [])) == 0, line
    out, err = capsys.readouterr()
    assert "of shape (3, 32, 32), 10 classes" in err and "x-cross" in out and "shapes/ring/" in out
