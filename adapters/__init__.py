"""Chat platform adapters: one module per platform, found by looking in this package.

Adding a platform means adding one file here that defines a ``ChatAdapter``
subclass; nothing else in bot-bridge names a platform.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import ChatAdapter


def adapter_classes() -> dict[str, type[ChatAdapter]]:
    """Every adapter class in this package, by platform name."""
    classes: dict[str, type[ChatAdapter]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name == "base" or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, ChatAdapter) and value.__module__ == module.__name__:
                classes[value.name] = value
    return classes


def environment_variables() -> dict[str, dict[str, str]]:
    """Per platform, setting key -> conventional environment variable (``TELEGRAM_BOT_TOKEN``)."""
    return {name: dict(cls.environment) for name, cls in adapter_classes().items()}


def enabled_adapters(platform_settings: dict[str, dict], http=None) -> dict[str, ChatAdapter]:
    """Adapters whose required secrets are configured; a platform without them is off."""
    enabled = {}
    for name, cls in adapter_classes().items():
        settings = platform_settings.get(name, {})
        if all(settings.get(key) for key in cls.required):
            enabled[name] = cls(settings, http=http)
    return enabled
