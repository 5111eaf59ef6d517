"""Chat platform adapters: one module per platform, found by looking in this package.

Adding a platform means adding one file here that defines a ``ChatAdapter``
subclass (or, for a destination that only receives alerts, an
``AlertTarget`` subclass); nothing else in bot-bridge names a platform.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import AlertTarget, ChatAdapter


def adapter_classes() -> dict[str, type[ChatAdapter]]:
    """Every chat adapter class in this package, by platform name."""
    return {name: cls for name, cls in _platform_classes().items() if issubclass(cls, ChatAdapter)}


def alert_only_classes() -> dict[str, type[AlertTarget]]:
    """Destinations that only receive alerts (a WeCom group robot), by platform name."""
    return {name: cls for name, cls in _platform_classes().items() if not issubclass(cls, ChatAdapter)}


def _platform_classes() -> dict[str, type[AlertTarget]]:
    classes: dict[str, type[AlertTarget]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name == "base" or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, AlertTarget) and value.__module__ == module.__name__:
                classes[value.name] = value
    return classes


def environment_variables() -> dict[str, dict[str, str]]:
    """Per platform, setting key -> conventional environment variable (``TELEGRAM_BOT_TOKEN``)."""
    return {name: dict(cls.environment) for name, cls in _platform_classes().items()}


def enabled_adapters(platform_settings: dict[str, dict], http=None) -> dict[str, ChatAdapter]:
    """Adapters whose required secrets are configured; a platform without them is off."""
    enabled = {}
    for name, cls in adapter_classes().items():
        settings = platform_settings.get(name, {})
        if all(settings.get(key) for key in cls.required):
            enabled[name] = cls(settings, http=http)
    return enabled


def alert_targets(
    platform_settings: dict[str, dict], chat_adapters: dict[str, ChatAdapter], http=None
) -> dict[str, AlertTarget]:
    """Where alerts can go: the enabled chat platforms, and every alert-only destination.

    An alert-only destination needs no secrets of its own to be on: each
    target that names it carries its own address (a robot's webhook key).
    """
    alert_only = {name: cls(platform_settings.get(name, {}), http=http) for name, cls in alert_only_classes().items()}
    return {**chat_adapters, **alert_only}
