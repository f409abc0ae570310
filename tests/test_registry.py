import sys
import types
from dataclasses import dataclass

import pytest

from cl_runner.registry import Registry


@dataclass
class FooConfig:
    name: str = "foo"
    size: int = 3


#: a registry the lazily imported test module registers into
WIDGETS = Registry("widget")


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


def test_declared_entry_imports_its_module_on_first_use(tmp_path, monkeypatch):
    pkg = tmp_path / "lazy_widgets"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "impl.py").write_text(
        "from widgets_under_test import FooConfig, WIDGETS\n"
        "@WIDGETS.register('foo', config=FooConfig)\n"
        "def build(cfg, scale):\n"
        "    return cfg.size * scale\n")
    (pkg / "empty.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "widgets_under_test",
                        types.SimpleNamespace(FooConfig=FooConfig, WIDGETS=WIDGETS))
    WIDGETS.declare("foo", config=FooConfig, module="lazy_widgets.impl")
    WIDGETS.declare("bar", config=FooConfig, module="lazy_widgets.empty")
    try:
        assert WIDGETS.names() == ["bar", "foo"] and "foo" in WIDGETS
        assert "lazy_widgets.impl" not in sys.modules  # declared: known, not imported
        assert WIDGETS.get("foo").config is FooConfig
        assert WIDGETS.build(FooConfig(size=5), scale=3) == 15
        assert "lazy_widgets.impl" in sys.modules
        with pytest.raises(LookupError, match="registers no factory"):
            WIDGETS.build(FooConfig(name="bar"))
    finally:
        WIDGETS._entries.clear()
        for name in ("lazy_widgets", "lazy_widgets.impl", "lazy_widgets.empty"):
            sys.modules.pop(name, None)


def test_register_must_match_the_declared_schema():
    reg = Registry("widget")
    reg.declare("foo", config=FooConfig, module="nowhere")

    @dataclass
    class OtherConfig:
        name: str = "foo"

    with pytest.raises(ValueError, match="declared with config FooConfig"):
        reg.register("foo", config=OtherConfig)
    with pytest.raises(ValueError, match="already declared"):
        reg.declare("foo", config=FooConfig, module="nowhere")


@pytest.mark.parametrize("kind", ["benchmark", "model", "strategy", "optimizer"])
def test_every_declared_component_is_registered_by_its_module(kind):
    from cl_runner.config import REGISTRIES

    (registry,) = [r for r in REGISTRIES if r.kind == kind]
    for entry in registry:
        factory = entry.factory  # imports entry.module
        assert entry.registered is factory, entry.name
        assert entry.config.name == entry.name  # the schema's default name is its own
        assert entry.module is not None and factory.__module__ == entry.module, entry.name
