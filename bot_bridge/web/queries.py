"""What the web console reads: its lists of voice notes and chats, and "find similar".

Read-only queries over the store's tables, kept apart from ``bot_bridge.remembering.store``
(which owns persistence: the rows, and every change to them) because only
the console's pages need them.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select

from ..remembering.store import ResultRow, Store, VoiceNoteRow


def voice_notes(
    store: Store,
    *,
    platform: str | None = None,
    chat_id: str | None = None,
    emotion: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[tuple[VoiceNoteRow, ResultRow | None]]:
    """The newest voice notes first, each with its result (``None`` until analysed or when it failed)."""
    query = (
        select(VoiceNoteRow, ResultRow)
        .outerjoin(ResultRow, VoiceNoteRow.result_id == ResultRow.id)
        .where(VoiceNoteRow.kind == "voice")
    )
    if platform:
        query = query.where(VoiceNoteRow.platform == platform)
    if chat_id:
        query = query.where(VoiceNoteRow.chat_id == chat_id)
    if emotion:
        query = query.where(ResultRow.emotion == emotion)
    if before_id is not None:
        query = query.where(VoiceNoteRow.id < before_id)
    with store.session() as session:
        return [tuple(row) for row in session.execute(query.order_by(VoiceNoteRow.id.desc()).limit(limit))]


def chats(store: Store) -> list[tuple[str, str, str | None]]:
    """Every chat that sent a voice note: ``(platform, chat_id, chat_name)``, by platform then name."""
    query = (
        select(VoiceNoteRow.platform, VoiceNoteRow.chat_id, func.max(VoiceNoteRow.chat_name))
        .where(VoiceNoteRow.kind == "voice")
        .group_by(VoiceNoteRow.platform, VoiceNoteRow.chat_id)
        .order_by(VoiceNoteRow.platform, func.max(VoiceNoteRow.chat_name), VoiceNoteRow.chat_id)
    )
    with store.session() as session:
        return [tuple(row) for row in session.execute(query)]


def voice_notes_for_results(store: Store, result_ids: list[str]) -> dict[str, VoiceNoteRow]:
    """The chat voice note each of ``result_ids`` came from; uploads have none."""
    if not result_ids:
        return {}
    with store.session() as session:
        rows = session.scalars(select(VoiceNoteRow).where(VoiceNoteRow.result_id.in_(result_ids)))
        return {row.result_id: row for row in rows}


def similar_results(store: Store, result_id: str, *, limit: int = 8, scan: int = 5000) -> list[tuple[ResultRow, float]]:
    """Stored results whose embeddings are closest to ``result_id``'s by cosine, closest first.

    Only embeddings of the same model are comparable, so others are skipped;
    the newest ``scan`` candidates are compared in one matrix product.
    """
    with store.session() as session:
        target = session.get(ResultRow, result_id)
        if target is None or target.embedding is None:
            return []
        candidates = session.execute(
            select(ResultRow.id, ResultRow.embedding)
            .where(
                ResultRow.id != result_id,
                ResultRow.model_name == target.model_name,
                ResultRow.embedding_dim == target.embedding_dim,
                ResultRow.embedding.is_not(None),
            )
            .order_by(ResultRow.created_at.desc())
            .limit(scan)
        ).all()
        if not candidates:
            return []
        matrix = np.frombuffer(b"".join(row.embedding for row in candidates), dtype="<f4")
        matrix = matrix.reshape(len(candidates), target.embedding_dim)
        similarity = _cosine(matrix, np.frombuffer(target.embedding, dtype="<f4"))
        best = np.argsort(-similarity, kind="stable")[:limit]
        ids = [candidates[i].id for i in best]
        rows = {row.id: row for row in session.scalars(select(ResultRow).where(ResultRow.id.in_(ids)))}
        return [(rows[candidates[i].id], float(similarity[i])) for i in best]


def _cosine(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``matrix`` with ``vector``; 0 where either is all zeros."""
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(vector)
    dots = matrix @ vector
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
