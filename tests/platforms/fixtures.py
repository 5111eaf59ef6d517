"""The fakes as pytest fixtures, for ``pytest_plugins = ["tests.platforms.fixtures"]`` in a conftest."""

from .feishu import fake_feishu
from .slack import fake_slack
from .telegram import fake_telegram
from .wecom import fake_wecom

__all__ = ["fake_feishu", "fake_slack", "fake_telegram", "fake_wecom"]
