from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import pytest

from pipelines.common import add_config_arguments, new_parser, resolve_config
from videobert import config as cfgmod
from videobert.config import field
from videobert.errors import ConfigError


@dataclass
class Inner:
    depth: int = field(4, help="tree depth")


@dataclass
class Example:
    fps: int = field(20, help="frames per second")
    lr: float = field(1e-5, help="learning rate")
    device: Literal["auto", "cpu", "cuda"] = field("auto", help="device")
    weights: Optional[Path] = field(None, help="weights file")
    freeze: bool = field(False, help="freeze embeddings")
    sizes: list[int] = field(default_factory=lambda: [1, 2], help="sizes")
    inner: Inner = field(default_factory=Inner, help="nested")


def test_defaults_yaml_and_overrides_layer_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("fps: 10\nlr: 3.0e-4\ninner:\n  depth: 2\n")
    cfg = cfgmod.load(Example, path, {"fps": 5}, ["inner.depth=3", "sizes=[4, 5]"])
    assert cfg.fps == 5 and cfg.lr == pytest.approx(3e-4)
    assert cfg.inner.depth == 3 and cfg.sizes == [4, 5]
    assert cfg.device == "auto" and cfg.weights is None


def test_misspelled_key_names_the_key_and_lists_valid_ones(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("fsp: 10\n")
    with pytest.raises(ConfigError) as err:
        cfgmod.load(Example, path)
    message = str(err.value)
    assert "'fsp'" in message and "did you mean 'fps'" in message
    assert "valid keys: fps, lr, device, weights, freeze, sizes, inner" in message
    assert str(path) in message


def test_nested_unknown_key_is_reported_with_its_path():
    with pytest.raises(ConfigError, match=r"unknown config key 'inner\.dept'"):
        cfgmod.from_dict(Example, {"inner": {"dept": 3}})


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"fps": "20"}, "fps: expected an integer"),
        ({"fps": True}, "fps: expected an integer"),
        ({"lr": "fast"}, "lr: expected a number"),
        ({"device": "tpu"}, "device: expected one of"),
        ({"freeze": "yes"}, "freeze: expected true or false"),
        ({"sizes": 3}, "sizes: expected a list"),
    ],
)
def test_ill_typed_values_are_refused(data, fragment):
    with pytest.raises(ConfigError, match=fragment):
        cfgmod.from_dict(Example, data)


def test_int_is_accepted_for_float_and_str_for_path():
    cfg = cfgmod.from_dict(Example, {"lr": 1, "weights": "w.pt"})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.weights == Path("w.pt")


def test_round_trip_through_yaml(tmp_path):
    cfg = cfgmod.from_dict(Example, {"fps": 7, "weights": "a/b.pt", "inner": {"depth": 1}})
    cfgmod.save(cfg, tmp_path / "config.yaml")
    again = cfgmod.load(Example, tmp_path / "config.yaml")
    assert again == cfg
    assert cfgmod.config_hash(again) == cfgmod.config_hash(cfg)
    assert cfgmod.config_hash(cfgmod.from_dict(Example, {"fps": 8})) != cfgmod.config_hash(cfg)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("fps: 10\nlr: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        cfgmod.read_yaml(path)
    with pytest.raises(ConfigError, match="config file not found"):
        cfgmod.read_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        cfgmod.read_yaml(tmp_path / "list.yaml")


def test_command_line_flags_generated_from_the_dataclass(tmp_path):
    parser = new_parser("prog", "test")
    add_config_arguments(parser, Example)
    path = tmp_path / "c.yaml"
    path.write_text("fps: 10\nlr: 0.5\n")
    args = parser.parse_args(["--config", str(path), "--fps", "12", "--freeze", "--weights", "none", "--set", "inner.depth=9"])
    cfg = resolve_config(Example, args)
    assert (cfg.fps, cfg.lr, cfg.freeze, cfg.weights, cfg.inner.depth) == (12, 0.5, True, None, 9)
    assert "frames per second (default: 20)" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--device", "tpu"])


def test_a_neutral_field_at_its_default_is_left_out_of_the_settings_that_decide_a_rerun():
    from dataclasses import dataclass

    from videobert.config import field, settings

    @dataclass
    class Section:
        rate: float = field(0.1, help="an old setting")
        added: float = field(0.0, help="a later setting whose default does what the code did before", neutral=True)

    assert settings(Section()) == {"rate": 0.1}
    assert settings(Section(added=0.5)) == {"rate": 0.1, "added": 0.5}


@dataclass
class Renamed:
    s3d_weights: Optional[Path] = field(None, former="weights", help="weights file")
    size: int = field(224, help="frame size")


@dataclass
class Outer:
    extract: Renamed = field(default_factory=Renamed, help="a section")


def test_a_renamed_key_keeps_its_former_name_as_an_alias_and_in_the_recorded_settings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("extract: {weights: old.pth}\n")
    assert cfgmod.load(Outer, path).extract.s3d_weights == Path("old.pth")
    # a later layer under the new name wins over the file's former one, and the other way round
    assert cfgmod.load(Outer, path, assignments=["extract.s3d_weights=new.pth"]).extract.s3d_weights == Path("new.pth")
    assert cfgmod.load(Renamed, overrides={"s3d_weights": "a.pth"}, assignments=["weights=b.pth"]).s3d_weights == Path("b.pth")
    with pytest.raises(ConfigError, match="weights: the former name of 's3d_weights'; give one of them"):
        cfgmod.from_dict(Renamed, {"weights": "a", "s3d_weights": "b"})
    assert cfgmod.settings(Renamed(Path("w.pth"))) == {"weights": "w.pth", "size": 224}  # hashes of older folders hold
    parser = new_parser("test", "test")
    add_config_arguments(parser, Renamed)
    for flag in ("--s3d-weights", "--weights"):
        assert resolve_config(Renamed, parser.parse_args([flag, "x.pth"])).s3d_weights == Path("x.pth")
    assert "--set size=448" in parser.format_help()
