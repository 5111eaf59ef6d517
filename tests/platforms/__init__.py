"""Loopback fakes of the Telegram, Slack, WeCom and Feishu/Lark APIs, and builders of their webhooks.

Each platform module holds one fake server class (``FakeTelegram``,
``FakeSlack``, ``FakeWeCom``, ``FakeFeishu``), a pytest fixture for it
(``fake_telegram``, ``fake_slack``, ``fake_wecom``, ``fake_feishu``) and
functions that build genuine inbound webhook requests with the platform's
own library (Feishu's are sealed and signed as its documentation says, the
SDK having no sender side). ``server`` holds what they
share. Register the fixtures in a conftest with
``pytest_plugins = ["tests.platforms.fixtures"]`` or import them by name.
"""
