from dataclasses import dataclass

import pytest

from cl_runner.registry import Registry


@dataclass
class FooConfig:
    name: str = "foo"
    size: int = 3


def test_register_build_and_list():
    reg = Registry("widget")
    reg.register("foo", config=FooConfig)(lambda cfg, scale: cfg.size * scale)
    assert reg.names() == ["foo"] and "foo" in reg
    assert reg.build(FooConfig(size=4), scale=2) == 8


def test_unknown_name_lists_valid_options():
    reg = Registry("widget")
    reg.register("foo", config=FooConfig)(lambda cfg: None)
    with pytest.raises(KeyError, match="valid options: foo"):
        reg.get("bar")


def test_duplicate_and_schema_without_name_rejected():
    reg = Registry("widget")
    reg.register("foo", config=FooConfig)(lambda cfg: None)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("foo", config=FooConfig)(lambda cfg: None)

    @dataclass
    class NoName:
        size: int = 1

    with pytest.raises(ValueError, match="name"):
        reg.register("bar", config=NoName)
