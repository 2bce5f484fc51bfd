"""Flat settings sections of a pack (``escalation:``, ``queue:``): a frozen dataclass of
string and number fields, read from YAML with one set of checks and one wording of errors."""

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def flat_settings(
    cls: type[T], values: dict[str, Any], section: str, *, positive: bool = False
) -> T:
    """``cls`` from a YAML mapping: its defaults for what is not given; unknown keys, empty
    strings, non-numbers, fractions for whole-number fields and (with ``positive``) numbers
    not above zero raise ``ValueError`` naming ``section.key``."""
    known = {f.name: f.type for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {section} setting(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    number = "a positive number" if positive else "a number"
    for key, value in values.items():
        kind, name = known[key], f"{section}.{key}"
        if kind in (str, "str"):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string")
            out[key] = value
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be {number}")
        if positive and value <= 0:
            raise ValueError(f"{name} must be {number}")
        whole = kind in (int, "int")
        if whole and value != int(value):
            raise ValueError(f"{name} must be a whole number")
        out[key] = int(value) if whole else float(value)
    return cls(**out)
