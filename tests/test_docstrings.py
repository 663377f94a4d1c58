"""Every public object, and every public method or property it has from this package, has a
docstring: the API reference (docs/api.md) is generated from them.

Public means named in the ``__all__`` of ``torch_balance`` or of a subpackage the reference
documents; a class's methods count with what it inherits from this package's own base classes
(the epoch shell gives every sampler ``set_epoch`` and ``state_dict``), not from torch or the
trainers.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

MODULES = [
    "torch_balance",
    "torch_balance.labels",
    "torch_balance.smote",
    "torch_balance.streams",
    "torch_balance.integrations",
    "torch_balance.integrations.lightning",
    "torch_balance.integrations.huggingface",
    "torch_balance.testing",
    "torch_balance.bench",
    "torch_balance.draws",
    "torch_balance.losses",
]
DUNDERS = ("__iter__", "__len__", "__getitem__")


def _undocumented(obj: Any, name: str) -> list[str]:
    missing = []
    if (inspect.isclass(obj) or callable(obj)) and not (obj.__doc__ or "").strip():
        missing.append(name)
    if not inspect.isclass(obj):
        return missing
    seen: set[str] = set()
    for klass in obj.__mro__:
        if not klass.__module__.startswith("torch_balance"):
            continue
        for attr, value in vars(klass).items():
            if attr in seen or (attr.startswith("_") and attr not in DUNDERS):
                continue
            seen.add(attr)
            if isinstance(value, property):
                function = value.fget
            elif isinstance(value, (classmethod, staticmethod)):
                function = value.__func__
            elif inspect.isfunction(value):
                function = value
            else:
                continue
            if not (getattr(function, "__doc__", None) or "").strip() and not _inherited_doc(
                obj, klass, attr
            ):
                missing.append(f"{klass.__module__}.{klass.__qualname__}.{attr}")
    return missing


def _inherited_doc(obj: type, klass: type, attr: str) -> bool:
    """Whether a base of ``klass`` (in ``obj``'s MRO) documents the ``attr`` it overrides."""
    later = obj.__mro__[obj.__mro__.index(klass) + 1 :]
    for base in later:
        value = vars(base).get(attr)
        if value is not None and (getattr(value, "__doc__", None) or "").strip():
            return True
    return False


def test_public_objects_have_docstrings() -> None:
    missing: set[str] = set()
    checked = 0
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            missing.update(_undocumented(getattr(module, name), f"{module_name}.{name}"))
            checked += 1
    assert checked > 80, f"only {checked} public names found"
    assert not missing, f"public objects or methods without a docstring: {sorted(missing)}"


def test_the_check_finds_a_missing_docstring() -> None:
    class Documented:
        """A class."""

        def method(self) -> None:
            pass

    assert _undocumented(Documented, "Documented") == []  # not from this package: not walked
    Documented.__module__ = "torch_balance.example"
    assert _undocumented(Documented, "Documented") == [
        "torch_balance.example.test_the_check_finds_a_missing_docstring.<locals>.Documented.method"
    ]
