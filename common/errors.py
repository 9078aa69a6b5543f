"""Errors for bad user input: each names the object and the field at fault."""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any

# How much of a user's value an error message quotes: events and logs must stay small whatever the input.
PREVIEW_CHARACTERS = 64

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = PREVIEW_CHARACTERS
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 3
_REPR.maxlevel = 2


class ConfigError(ValueError):
    """Invalid pool or advertisement configuration.

    ``str(e)`` is ``"{source}: {field}: {message}"``; empty parts (a source not known yet) are left out. The
    source names the object (``ConfigMap metallb-system/config``, ``IPAddressPool metallb-system/pool-a``) and
    the field is a path inside it (``address-pools[0].addresses[1]``, ``spec.serviceAllocation.priority``).
    """

    def __init__(self, field: str, message: str, source: str = "") -> None:
        self.source = source
        self.field = field
        self.message = message
        super().__init__(self._text())

    def _text(self) -> str:
        return ": ".join(part for part in (self.source, self.field, self.message) if part)

    def __str__(self) -> str:
        return self._text()

    def with_source(self, source: str) -> ConfigError:
        """A copy naming ``source`` (the object the field belongs to)."""
        return ConfigError(self.field, self.message, source)

    def under(self, prefix: str) -> ConfigError:
        """A copy whose field path is nested under ``prefix`` (e.g. ``spec.nodeSelectors[0]``)."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        if self.field.startswith("["):
            field = f"{prefix}{self.field}"
        return ConfigError(field, self.message, self.source)


class RequestError(ValueError):
    """A Service asks for something malformed (bad annotation, conflicting fields).

    ``str(e)`` is ``"{field}: {message}"``, e.g.
    ``metadata.annotations[metallb.io/loadBalancerIPs]: "10.0.0.x" is not an IP address``.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """A part of an object that was skipped, not fatal: ``str(p)`` is ``"{field}: {message}"`` with `field` a
    path inside the object (``spec.externalIPs[0]``, ``endpoints[2].addresses[0]``)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def type_name(value: Any) -> str:
    """What a parsed YAML/JSON value is, in the words an error message uses ("a mapping, got list")."""
    if value is None:
        return "null"
    names = {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "integer", float: "number"}
    return names.get(type(value), type(value).__name__)


def shorten(text: str, limit: int = PREVIEW_CHARACTERS) -> str:
    """``text`` itself when short, else its start and how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...(+{len(text) - limit} characters)"


def preview(value: Any) -> str:
    """A bounded repr for error messages: never the whole of a large or deeply shared value (a YAML alias
    bomb's repr alone is exponential)."""
    if isinstance(value, str):
        return repr(shorten(value))
    return shorten(_REPR.repr(value), 2 * PREVIEW_CHARACTERS)
