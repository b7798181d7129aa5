"""What every configuration section shares: its fields' types checked against the
annotations, a :class:`~cowork_llm.errors.ConfigError` that names the key
(``llm.model.temperature``), and a repr that masks secrets.

This module must not use ``from __future__ import annotations``, nor may the sections:
dataclasses-json reads the real annotations.
"""

import dataclasses
import typing

from dataclasses_json import DataClassJsonMixin

from ..errors import ConfigError
from ._checks import check_type, masked_repr, type_hints

__all__ = ["Section"]


class Section(DataClassJsonMixin):
    """Shared behaviour: type checks from annotations, masked repr."""

    _section: typing.ClassVar[str] = "llm"

    def _check_types(self) -> None:
        hints = type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            check_type(self._section, f.name, getattr(self, f.name), hints[f.name])

    def _fail(self, name: str, rule: str) -> None:
        """Raises ConfigError: ``llm.<section>.<name> <rule>, got <value>``."""
        raise ConfigError(f"{self._section}.{name} {rule}, got {getattr(self, name)!r}",
                          key=f"{self._section}.{name}")

    def __repr__(self) -> str:
        parts = [f"{f.name}={masked_repr(f.name, getattr(self, f.name))}"
                 for f in dataclasses.fields(self) if f.repr]  # type: ignore[arg-type]
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__
