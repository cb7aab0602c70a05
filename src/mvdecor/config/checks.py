"""Checks the configuration's sections run on their values (one :class:`ConfigError` line each)."""

from __future__ import annotations

from typing import Any

from mvdecor.errors import ConfigError

__all__ = ["at_least", "check", "device_ok", "fraction", "one_of", "ordered_range", "positive"]


def check(section: str, name: str, value: Any, ok: bool, requirement: str) -> None:
    if not ok:
        raise ConfigError(None, f"{section}.{name} must be {requirement}, got {value!r}")


def at_least(config: Any, section: str, minimum: float, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        check(section, name, value, value >= minimum, f">= {minimum}")


def positive(config: Any, section: str, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        check(section, name, value, value > 0, "> 0")


def fraction(config: Any, section: str, *names: str, open_top: bool = False) -> None:
    for name in names:
        value = getattr(config, name)
        ok = 0 <= value < 1 if open_top else 0 <= value <= 1
        check(section, name, value, ok, "in [0, 1)" if open_top else "in [0, 1]")


def one_of(config: Any, section: str, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, name)
    check(section, name, value, value in choices, f"one of {', '.join(choices)}")


def ordered_range(config: Any, section: str, name: str, low: float, high: float | None) -> None:
    value = getattr(config, name)
    a, b = value
    ok = low < a <= b and (high is None or b <= high)
    bounds = f"{low} < low <= high" + (f" <= {high}" if high is not None else "")
    check(section, name, value, ok, f"[low, high] with {bounds}")


def device_ok(device: str) -> bool:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    head, _, index = device.partition(":")
    return device in ("auto", "cpu", "cuda") or (head == "cuda" and index.isdigit())
