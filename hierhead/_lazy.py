"""PEP 562 lazy names for the package ``__init__`` files.

torch and torchvision take about 6 s to import on a 2-core machine; the CLI's parser and
``hierhead designs`` need neither, so the torch-backed names load on first use."""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_names(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``package.<where[name]>`` on the first use of ``name``."""

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
