"""Alembic environment: the store hands over an open connection, no alembic.ini needed."""

from alembic import context

import bot_bridge.remembering.accounts  # noqa: F401 - accounts and console sessions
import bot_bridge.remembering.alert_store  # noqa: F401 - its tables are on Base too
import bot_bridge.remembering.audit  # noqa: F401
import bot_bridge.remembering.case_changes  # noqa: F401 - cases, their deliveries and presses
import bot_bridge.remembering.case_deliveries  # noqa: F401
import bot_bridge.remembering.deployment  # noqa: F401
import bot_bridge.remembering.cursors  # noqa: F401 - so is the cursors table
import bot_bridge.remembering.labels  # noqa: F401
from bot_bridge.remembering.store import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
