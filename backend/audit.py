"""The audit trail: who created, cancelled, deleted, edited or promoted which object, and when (GET /api/audit)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.tables import AuditEvent, utcnow

__all__ = ["record", "list_events", "event_view"]


def record(session: Session, actor: str, action: str, object_type: str, object_id: int, *,
           owner: str | None = None, detail: dict[str, Any] | None = None) -> None:
    """Add an event to ``session``: it is stored by the same commit as the change it describes (or not at all)."""
    session.add(AuditEvent(at=utcnow(), actor=actor, action=action, object_type=object_type, object_id=object_id,
                           owner=owner, detail=detail))


def list_events(session: Session, *, actor: str | None, action: str | None, object_type: str | None,
                object_id: int | None, limit: int, offset: int) -> tuple[list[AuditEvent], int]:
    """Newest first, filtered by the given fields."""
    query = select(AuditEvent)
    for column, value in ((AuditEvent.actor, actor), (AuditEvent.action, action),
                          (AuditEvent.object_type, object_type), (AuditEvent.object_id, object_id)):
        if value is not None:
            query = query.where(column == value)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit).offset(offset)).all()
    return list(items), int(total)


def event_view(event: AuditEvent) -> dict[str, Any]:
    return {"id": event.id, "at": event.at, "actor": event.actor, "action": event.action,
            "object_type": event.object_type, "object_id": event.object_id, "owner": event.owner,
            "detail": event.detail}
