"""Every command in README.md is run by CI (.ci/run) or by this test."""

import re
import shlex

from tests.conftest import REPO, run_cli

SETUP = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]"'


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_setup_and_test_command_is_what_ci_runs():
    commands = readme_commands()
    assert f"{SETUP} && pytest" in commands
    ci = (REPO / ".ci" / "run").read_text()
    assert "python3 -m venv .venv" in ci and ". .venv/bin/activate" in ci
    assert 'pip install -e ".[dev]"' in ci and "\npytest\n" in ci


def test_readme_videobert_commands_run(tmp_path):
    ran = 0
    for command in readme_commands():
        assert command.startswith(SETUP), f"README command without the one setup line: {command}"
        rest = command[len(SETUP):].removeprefix(" && ")
        if rest == "pytest":
            continue
        argv = shlex.split(rest)
        assert argv[0] == "videobert", rest
        result = run_cli(*argv[1:], cwd=tmp_path)
        assert result.returncode == 0, f"{rest}: {result.stderr}"
        ran += 1
    assert ran >= 1
