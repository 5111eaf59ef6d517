"""Which deployment this is: a short random id, made once and kept in its database.

Buttons on a case's message carry it, so a press can be told apart from a
press on a message of another deployment sharing the same chat app (a
staging bot-bridge beside production's, both posting to one Slack app whose
interactivity URL reaches only one of them). The database is what every
process and host of a deployment shares, so the id lives there; the first
process to ask writes it (``INSERT ... ON CONFLICT DO NOTHING``) and every
other one reads the same.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, mapped_column

from .alert_store import insert_new
from .store import Base, Store, UTCDateTime

ID_NAME = "id"


class DeploymentRow(Base):
    __tablename__ = "deployment"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


def deployment_id(store: Store) -> str:
    """The deployment's id (8 hex digits), made on first use."""
    query = select(DeploymentRow.value).where(DeploymentRow.name == ID_NAME)
    with store.session() as session:
        found = session.scalar(query)
    if found is not None:
        return found
    with store.session.begin() as session:
        insert_new(session, DeploymentRow, {"name": ID_NAME, "value": secrets.token_hex(4),
                                            "created_at": datetime.now(timezone.utc)}, ["name"])
        return session.scalar(query)
