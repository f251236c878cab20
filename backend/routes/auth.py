"""Who am I (GET /api/auth, answered without a token: does this API need one?) and the audit trail (admins)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from backend import audit
from backend.deps import MAX_ID, MAX_PAGE, SessionDep, UserDep, require_admin
from backend.errors import FORBIDDEN
from backend.schemas import UtcDatetime
from backend.security import USER_KEY
from backend.tables import AUDIT_ACTIONS, AUDIT_OBJECTS
from backend.users import NAME_PATTERN, User

router = APIRouter(tags=["auth"])


class UserOut(BaseModel):
    name: str
    role: Literal["admin", "member"]


class AuthOut(BaseModel):
    """Whether clients must sign in, and who the sent token signs in as (null: none sent)."""

    required: bool = Field(description="true when the API needs a token (users file or TRUSTLAB_API_TOKEN)")
    user: UserOut | None = Field(description="the token's user; with no credentials configured, the local user")


class AuditOut(BaseModel):
    id: int
    at: UtcDatetime
    actor: str = Field(description="who did it")
    action: str = Field(description=f"one of {', '.join(AUDIT_ACTIONS)}")
    object_type: str = Field(description=f"one of {', '.join(AUDIT_OBJECTS)}")
    object_id: int
    owner: str | None = Field(description="the object's owner at the time")
    detail: dict[str, Any] | None


class AuditList(BaseModel):
    items: list[AuditOut]
    total: int


@router.get("/auth", response_model=AuthOut, summary="Does this API need a token, and whose is the one sent?")
def whoami(request: Request) -> dict[str, Any]:
    user = request.scope.get(USER_KEY)
    return {"required": request.app.state.settings.auth_required,
            "user": user.view() if isinstance(user, User) else None}


@router.get("/audit", response_model=AuditList, summary="The audit trail, newest first (admins only)",
            responses=FORBIDDEN)
def audit_trail(session: SessionDep, user: UserDep,
                actor: Annotated[str | None, Query(max_length=40, pattern=NAME_PATTERN,
                                                   description="only what this user did")] = None,
                action: Annotated[Literal[AUDIT_ACTIONS] | None, Query()] = None,  # type: ignore[valid-type]
                object_type: Annotated[Literal[AUDIT_OBJECTS] | None, Query()] = None,  # type: ignore[valid-type]
                object_id: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
                limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
                offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0) -> dict[str, Any]:
    require_admin(user, "the audit trail")
    items, total = audit.list_events(session, actor=actor, action=action, object_type=object_type,
                                     object_id=object_id, limit=limit, offset=offset)
    return {"items": [audit.event_view(e) for e in items], "total": total}
