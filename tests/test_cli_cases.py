"""Every command-line case of the CLI issue: each bad case exits with its status, prints one
error line naming the flag or file, shows no traceback and leaves nothing behind."""
import json
import os
import subprocess
import sys

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
