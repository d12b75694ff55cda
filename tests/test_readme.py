"""The README's Python example runs as written."""
import pathlib
import re


def test_readme_python_example_runs(capsys):
    text = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text.split("\n## In Python\n", 1)[-1], flags=re.S)
    assert blocks, "README has no python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "Non-trainable params: 55,744" in out
    assert "features cached: True" in out
    loss = float(re.search(r"loss after 20 steps: ([0-9.e-]+)", out).group(1))
    assert loss < 0.1


def test_ci_runs_the_readme_test_command():
    root = pathlib.Path(__file__).parent.parent
    command = re.search(r"```bash\n(.*?)\n", (root / "README.md").read_text()).group(1).strip()
    assert "pytest" in command
    assert command in (root / ".ci" / "run").read_text().splitlines()
