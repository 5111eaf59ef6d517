"""Loopback fakes of the Telegram, Slack and WeCom APIs, and builders of their webhooks.

Each platform module holds one fake server class (``FakeTelegram``,
``FakeSlack``, ``FakeWeCom``), a pytest fixture for it (``fake_telegram``,
``fake_slack``, ``fake_wecom``) and functions that build genuine inbound
webhook requests with the platform's own library. ``server`` holds what they
share. Register the fixtures in a conftest with
``pytest_plugins = ["tests.platforms.fixtures"]`` or import them by name.
"""
