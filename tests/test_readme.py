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


def test_readme_api_snippets_and_the_demos_printed_lines_run_as_written(portable_model, tmp_path):
    """README's Python blocks and what `videobert demo` prints to paste, run against a small trained
    run (tests/conftest.py's portable_model) standing in for the demo's: its model folder at
    RUN/model and its videos at RUN/synth/videos."""
    import contextlib
    import io
    import shlex

    from pipelines.demo import next_steps
    from tests.conftest import run_cli

    run = tmp_path / "demo"
    run.mkdir()
    (run / "model").symlink_to(portable_model["copy"], target_is_directory=True)
    (run / "synth").symlink_to(portable_model["run"] / "synth", target_is_directory=True)
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks and any("VideoBERTPipeline" in block for block in blocks)
    for block in blocks:
        exec(compile(block.replace("runs/demo", str(run)), "README.md", "exec"), {})  # noqa: S102
    lines = next_steps(run)
    python = lines[lines.index("In Python:") + 1].strip()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(python, "videobert demo", "exec"), {})  # noqa: S102
    assert "Hit(" in printed.getvalue()
    retrieve = next(line.strip() for line in lines if line.strip().startswith("videobert retrieve"))
    result = run_cli(*shlex.split(retrieve)[1:])
    assert result.returncode == 0, result.stderr
