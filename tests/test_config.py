"""Typed configs: every key and type checked, overrides, safe YAML."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from contrastive_seq.config import ConfigError, Variants, apply_overrides, from_mapping, load_yaml


class Shape(Variants):
    pass


@Shape.register("circle")
@dataclass
class Circle(Shape):
    name: str = "circle"
    radius: float = 1.0


@Shape.register("box")
@dataclass
class Box(Shape):
    name: str = "box"
    sides: tuple[int, int] = (1, 2)


@dataclass
class Inner:
    steps: int = 10
    mode: Literal["fast", "slow"] = "fast"
    clip: float | None = None


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    shape: Shape = field(default_factory=Circle)
    tags: list[str] = field(default_factory=list)
    flag: bool = False


def test_defaults_and_conversion():
    config = from_mapping(Outer, {"inner": {"steps": 3, "clip": 1}, "shape": {"name": "box", "sides": [3, 4]}})
    assert config.inner == Inner(steps=3, mode="fast", clip=1.0)
    assert isinstance(config.inner.clip, float)
    assert config.shape == Box(sides=(3, 4))


@pytest.mark.parametrize(
    "data,key",
    [
        ({"inner": {"stepz": 3}}, "inner.stepz"),
        ({"inner": {"steps": "3"}}, "inner.steps"),
        ({"inner": {"steps": 2.5}}, "inner.steps"),
        ({"inner": {"steps": True}}, "inner.steps"),
        ({"inner": {"mode": "medium"}}, "inner.mode"),
        ({"inner": {"clip": "big"}}, "inner.clip"),
        ({"shape": {"name": "triangle"}}, "shape.name"),
        ({"shape": {"name": "box", "radius": 2}}, "shape.radius"),
        ({"shape": {"name": "box", "sides": [1, 2, 3]}}, "shape.sides"),
        ({"tags": "a"}, "tags"),
        ({"flag": "yes"}, "flag"),
        ({"extra": 1}, "extra"),
    ],
)
def test_errors_name_the_key(data, key):
    with pytest.raises(ConfigError, match=f"config.{key}"):
        from_mapping(Outer, data, key="config")


def test_overrides_parse_yaml_values():
    data = apply_overrides({"inner": {"steps": 1}}, ["inner.steps=5", "inner.clip=0.5", "shape.name=box", "tags=[a, b]"])
    config = from_mapping(Outer, data)
    assert config.inner.steps == 5 and config.inner.clip == 0.5
    assert config.shape == Box() and config.tags == ["a", "b"]
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["novalue"])


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("inner: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="evil.yaml"):
        load_yaml(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(tmp_path / "list.yaml")


def test_registering_another_class_under_a_taken_name_is_refused_naming_section_and_name():
    class Triangle(Shape):
        name: str = "circle"

    with pytest.raises(ValueError, match=r"Shape already has a variant 'circle' \(test_config\.Circle\); "
                       r"test_config\..*Triangle needs another name"):
        Shape.register("circle")(Triangle)
    assert Shape.variants["circle"] is Circle
    assert Shape.register("circle")(Circle) is Circle  # the same class again (a module reloaded) is accepted
    assert Shape.variants["circle"] is Circle
