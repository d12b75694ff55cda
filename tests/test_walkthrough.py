"""docs/walkthrough.md runs as written: its python blocks in order in one namespace, its bash
blocks' ``nptl`` commands through the CLI; each output block equals what the block before it printed."""
import contextlib
import io
import pathlib
import re
import shlex

from nptl.cli import main

DOC = pathlib.Path(__file__).parent.parent / "docs" / "walkthrough.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", flags=re.S)


def run_blocks(text: str, workdir) -> list:
    """``[(language, code, printed output, the text block that follows or None)]``."""
    blocks = BLOCK.findall(text)
    namespace: dict = {}
    out = []
    for k, (lang, code) in enumerate(blocks):
        if lang not in ("python", "bash"):
            continue
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.chdir(workdir):
            if lang == "python":
                exec(compile(code, f"{DOC.name} block {k}", "exec"), namespace)
            else:
                for line in code.strip().splitlines():
                    argv = shlex.split(line)
                    assert argv[0] == "nptl", f"bash block {k}: only nptl commands run here: {line}"
                    assert main(argv[1:]) == 0, line
        nxt = blocks[k + 1] if k + 1 < len(blocks) and blocks[k + 1][0] == "text" else None
        out.append((lang, code, buf.getvalue(), None if nxt is None else nxt[1]))
    return out


def _lines(s: str) -> list:
    return [line.rstrip() for line in s.rstrip().splitlines()]


def test_walkthrough_runs_and_prints_what_it_shows(tmp_path):
    results = run_blocks(DOC.read_text(), tmp_path)
    assert sum(lang == "python" for lang, *_ in results) >= 8
    for lang, code, printed, shown in results:
        assert shown is not None, f"no output block after:\n{code}"
        assert _lines(printed) == _lines(shown), f"output of\n{code}\ndiffers from the document"


def test_readme_trace_is_what_the_command_prints(capsys):
    text = (DOC.parent.parent / "README.md").read_text()
    blocks = BLOCK.findall(text)
    k = next(i for i, (lang, code) in enumerate(blocks) if lang == "bash" and code.startswith("nptl explain "))
    assert blocks[k + 1][0] == "text"
    assert main(shlex.split(blocks[k][1].strip())[1:]) == 0
    printed, shown = _lines(capsys.readouterr().out), _lines(blocks[k + 1][1])
    starts = [i for i, line in enumerate(printed) if line == shown[0]]
    assert any(printed[i:i + len(shown)] == shown for i in starts), "README's trace differs from the output"
