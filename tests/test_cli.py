import pytest

from pipelines import cli
from tests.conftest import run_cli


def test_help_lists_the_stages():
    result = run_cli("--help")
    assert result.returncode == 0
    for stage in cli.STAGES:
        assert stage in result.stdout


@pytest.mark.parametrize("stage", list(cli.STAGES))
def test_each_stage_has_help(stage, capsys):
    import importlib

    module = importlib.import_module(cli.STAGES[stage][0])
    assert module.main(["--help"]) == 0
    assert "usage: videobert " + stage in capsys.readouterr().out


def test_unknown_stage_and_bad_flags_are_usage_errors():
    assert run_cli("nonsense").returncode == 2
    result = run_cli("synth")  # missing OUT
    assert result.returncode == 2 and "required" in result.stderr
    assert run_cli("synth", "/tmp/x", "--videos", "many").returncode == 2


def test_misspelled_yaml_key_exits_2_naming_the_key(tmp_path):
    config = tmp_path / "synth.yaml"
    config.write_text("videos: 2\nseeed: 3\n")
    result = run_cli("synth", tmp_path / "out", "--config", config)
    assert result.returncode == 2
    assert "'seeed'" in result.stderr and "did you mean 'seed'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_failure_is_one_line_and_debug_shows_the_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_cli("synth", blocker, "--videos", "1")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"videobert synth: error: {blocker}: output path exists and is not a folder"]
    debug = run_cli("synth", blocker, "--videos", "1", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_stage_writes_its_resolved_config(tmp_path):
    result = run_cli("synth", tmp_path / "c", "--videos", "1", "--seed", "9", "--set", "jitter=0.25")
    assert result.returncode == 0, result.stderr
    import yaml

    written = yaml.safe_load((tmp_path / "c" / "config.yaml").read_text())
    assert written["seed"] == 9 and written["videos"] == 1 and written["jitter"] == 0.25
    again = run_cli("synth", tmp_path / "d", "--config", tmp_path / "c" / "config.yaml")
    assert again.returncode == 0
    assert (tmp_path / "d" / "labels.jsonl").read_text() == (tmp_path / "c" / "labels.jsonl").read_text()


def test_help_files_are_what_the_parsers_write_and_help_imports_no_torch():
    """pipelines/help/<command>.txt is each command's --help as its parser writes it (rewrite them
    with `python -m pipelines.cli --write-help`); `videobert <command> --help` prints it without
    importing torch."""
    import subprocess
    import sys

    from tests.conftest import REPO

    stale = [command for command in cli.STAGES
             if (cli.HELP_DIR / f"{command}.txt").read_text(encoding="utf-8") != cli.help_text(command)]
    assert not stale, f"stale help of {stale}: run python -m pipelines.cli --write-help"
    probe = ("import sys; from pipelines.cli import main; code = main(['pretrain', '--help']); "
             "print('TORCH', 'torch' in sys.modules, code)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.stdout.startswith("usage: videobert pretrain") and "TORCH False 0" in result.stdout, result.stderr
