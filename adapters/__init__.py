"""Chat platform adapters: one module per platform, found by looking in this package.

Adding a platform means adding one file here that defines a ``ChatAdapter``
subclass (or, for a destination that only receives alerts, an
``AlertSender`` subclass); nothing else in bot-bridge names a platform.
The package is looked through once per process.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType

from .base import AlertSender, ChatAdapter


def adapter_classes() -> dict[str, type[ChatAdapter]]:
    """Every chat adapter class in this package, by platform name."""
    return {name: cls for name, cls in _platform_classes().items() if issubclass(cls, ChatAdapter)}


def alert_only_classes() -> dict[str, type[AlertSender]]:
    """Destinations that only receive alerts (a WeCom group robot), by platform name."""
    return {name: cls for name, cls in _platform_classes().items() if not issubclass(cls, ChatAdapter)}


@functools.cache
def _platform_classes() -> Mapping[str, type[AlertSender]]:
    """Found once, read-only: settings validation, secret masking and every build of the senders ask for it."""
    classes: dict[str, type[AlertSender]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name == "base" or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, AlertSender) and value.__module__ == module.__name__:
                classes[value.name] = value
    return MappingProxyType(classes)


def environment_variables() -> dict[str, dict[str, str]]:
    """Per platform, setting key -> conventional environment variable (``TELEGRAM_BOT_TOKEN``)."""
    return {name: dict(cls.environment) for name, cls in _platform_classes().items()}


def enabled_adapters(platform_settings: dict[str, dict], http=None) -> dict[str, ChatAdapter]:
    """Adapters whose required secrets are configured; a platform without them is off."""
    enabled = {}
    for name, cls in adapter_classes().items():
        settings = platform_settings.get(name, {})
        if not cls.missing_settings(settings):
            enabled[name] = cls(settings, http=http)
    return enabled


def alert_senders(
    platform_settings: dict[str, dict], chat_adapters: dict[str, ChatAdapter], http=None
) -> dict[str, AlertSender]:
    """What can post alerts, by platform: the enabled chat adapters, and every alert-only destination's sender.

    An alert-only destination needs no secrets of its own to be on: each
    target that names it carries its own address (a robot's webhook key).
    """
    alert_only = {name: cls(platform_settings.get(name, {}), http=http) for name, cls in alert_only_classes().items()}
    return {**chat_adapters, **alert_only}
