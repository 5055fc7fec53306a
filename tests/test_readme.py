"""Every command in README.md is run by CI (.ci/run) or by this test."""

import re

from tests.conftest import REPO

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


def test_readme_commands_are_the_demo_and_the_tests_and_ci_runs_both():
    """README.md's two commands (console examples are not commands to run); .ci/run runs both."""
    assert readme_commands() == [f"{SETUP} && videobert demo", f"{SETUP} && pytest"]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert ci.index("videobert demo") > ci.index("pytest")



def test_readme_lists_exactly_the_settings_that_only_change_speed():
    """README.md's list of the settings `videobert run` ignores is the one the configs declare."""
    from videobert.runner import speed_only_settings

    text = (REPO / "README.md").read_text()
    paragraph = text[text.index("Settings that only change"):]
    paragraph = paragraph[: paragraph.index("\n\n")]
    listed = set(re.findall(r"`(\w+\.\w+)`", paragraph))
    declared = {f"{stage}.{key}" for stage, keys in speed_only_settings().items() for key in keys}
    assert listed == declared
