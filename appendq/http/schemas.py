"""What the HTTP API's bodies look like, for validation and for the OpenAPI document: the leads
body and its receipt, the retry body (parsed with the intake's own checks), error answers. Both
bodies may name a LiveVox ``account`` (``appendq.accounts``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from appendq.accounts import NAME
from appendq.http.intake import MAX_RECORDS
from appendq.http.refused import Refused
from appendq.http.validation import BodyError, ambiguous_keys, loads
from appendq.keys import DEFAULT_ACCOUNT
from appendq.leads import LeadRecord
from appendq.ops.retry import REASON_MAX
from appendq.target import ID_MAX

#: How ``since`` and ``until`` are read (``appendq.clock.in_zone``), as the CLI reads them.
ZONE = "ISO 8601; without an offset, in APPENDQ_TIMEZONE"


class FieldErrorDoc(BaseModel):
    index: int = Field(description="0-based position of the record in `records`")
    row: int | None = None
    field: str
    message: str


class ReceiptDoc(BaseModel):
    model_config = ConfigDict(extra="allow")
    target: str = Field(examples=["service:1001"])
    accepted: int
    rejected: int
    record_ids: list[str] = Field(description="one id per accepted record, in order")
    errors: list[FieldErrorDoc]
    duplicate: int = Field(0, description="records not sent: same phone1/account today")
    duplicates: list[dict[str, Any]] = Field(
        default_factory=list, description="index, record_id and duplicate_of of each"
    )


class ErrorDoc(BaseModel):
    detail: str
    field: str | None = Field(None, description="the parameter or body field at fault")
    roles: list[str] | None = Field(None, description="403: the roles that may call this")


class ExpectedBatch(BaseModel):
    """One batch as ``GET /v1/batches/retry-preview`` showed it."""

    model_config = ConfigDict(extra="forbid")
    id: int = Field(ge=1, le=ID_MAX)
    status: str = Field(max_length=16)
    version: int = Field(ge=0, le=2**31 - 1)


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch: int | None = Field(None, ge=1, le=ID_MAX)
    account: str | None = Field(
        None,
        max_length=64,
        examples=["acme"],
        description="only this LiveVox account's batches (default: every account; a token "
        "limited to accounts: its own)",
    )
    status: list[str] = Field(default_factory=list)
    target: str | int | None = Field(None, examples=["service:1001"])
    since: datetime | None = Field(None, description=f"created at or after ({ZONE})")
    until: datetime | None = Field(None, description=f"created before ({ZONE})")
    reason: str = Field(
        description=f"why (recorded in the audit): one line, 1 to {REASON_MAX} characters",
        min_length=1,
        max_length=REASON_MAX,
    )
    expect: list[ExpectedBatch] | None = Field(
        None,
        max_length=10_000,
        description="the batches as the preview showed them (id, status, version): only those "
        "still exactly so are moved. Without it, batches that may already be at LiveVox "
        "(in_doubt, operator_hold) are left alone: re-send them by naming them.",
    )


def error_docs(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorDoc} for code in codes}


def leads_body() -> dict[str, Any]:
    target = {"type": "integer", "minimum": 1}
    schema = {
        "type": "object",
        "description": "Exactly one of service and campaign.",
        "properties": {
            "service": {**target, "description": "LiveVox service id (today's campaign)"},
            "campaign": {**target, "description": "a pinned LiveVox campaign id"},
            "account": {
                "type": "string",
                "pattern": NAME.pattern,
                "default": DEFAULT_ACCOUNT,
                "description": "the LiveVox account (APPENDQ_ACCOUNTS_FILE) whose service or "
                "campaign this is; a token limited to accounts may only name its own",
            },
            "records": {
                "type": "array",
                "maxItems": MAX_RECORDS,
                "items": LeadRecord.model_json_schema(),
            },
        },
        "required": ["records"],
        "additionalProperties": False,
    }
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def retry_body() -> dict[str, Any]:
    schema = RetryRequest.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def retry_request(raw: bytes, content_type: str | None) -> RetryRequest:
    """The retry body, parsed with the intake's own checks (depth, UTF-8, duplicate keys)."""
    try:
        body = loads(raw, content_type)
    except BodyError as exc:
        raise Refused(exc.status, exc.detail) from None
    if isinstance(body, dict) and ambiguous_keys(body):
        field = ambiguous_keys(body)[0][:60]
        raise Refused(422, f"{field!r} is given more than once: ambiguous", field=field)
    try:
        return RetryRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise Refused(422, f"{field}: {first['msg']}", field=field) from None
