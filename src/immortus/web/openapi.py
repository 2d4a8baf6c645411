"""The OpenAPI 3.1 document of the verify API: every route, body and status code it answers.

    from immortus.web.openapi import openapi_document

    document = openapi_document("/immortus")   # a dict, ready for json.dumps

``python -m immortus.web.openapi [PREFIX]`` prints it as JSON; ``docs/openapi.json`` is that
output for the default prefix. The document describes what every adapter (Starlette, Flask,
Django) serves; no adapter serves the document itself. Building it imports no framework.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

from immortus.status import (
    BODY_KEYS,
    MAX_ERROR_MESSAGE_LENGTH,
    MAX_ERROR_TYPE_LENGTH,
    MAX_HISTORY,
    MAX_MESSAGE_LENGTH,
    HistoryEvent,
    State,
)
from immortus.validation import MAX_NAME_LENGTH
from immortus.web.batch import MAX_BATCH, MAX_BATCH_BYTES
from immortus.web.cancel import MAX_CANCEL_BYTES
from immortus.web.options import HISTORY_VALUES
from immortus.web.responses import ECHO_LENGTH
from immortus.web.routes import ROUTES, Route
from immortus.web.script import SCRIPT_MEDIA_TYPE

__all__ = ["OPENAPI_VERSION", "main", "openapi_document"]

#: The OpenAPI version the document is written in.
OPENAPI_VERSION: Final = "3.1.0"

_JSON: Final = "application/json"
_EVENT_STREAM: Final = "text/event-stream"
_SCHEMAS: Final = "#/components/schemas/"
_ERROR_TYPES: Final = (
    "InvalidInput",
    "StrategyError",
    "ServerError",
    "StoreUnavailable",
    "NotFound",
    "MethodNotAllowed",
    "UnsupportedMediaType",
    "EndpointsNotSecured",
    "TooManyStreams",
    "NotCancellable",
)
_EXAMPLE_ID: Final = "7f0c2a9e-5b1d-4c3e-9a8f-0d6b2e4c1a7f"
_EXAMPLE_CLASS: Final = "reports.build"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"{_SCHEMAS}{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


def _name(kind: str, *, in_path: bool, allow_spaces: bool) -> dict[str, Any]:
    """The schema of a job id or job class; in a path, it cannot hold ``/``."""
    other = "/\\s" if in_path else "\\s"
    if allow_spaces:
        inner = "/" if in_path else "\\n"
        pattern = f"^[^{other}]([^{inner}]*[^{other}])?$"
        spaces = "no leading or trailing whitespace"
    else:
        pattern = f"^[^{other}]+$"
        spaces = "no whitespace"
    where = " No `/`: servers decode `%2F` before routing." if in_path else ""
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_NAME_LENGTH,
        "pattern": pattern,
        "description": (
            f"A {kind}: printable text of 1 to {MAX_NAME_LENGTH} characters, {spaces}.{where} "
            "Anything else is answered 400."
        ),
    }


def _error_body(echoed: str, description: str) -> dict[str, Any]:
    """The schema of an error body that echoes the ``echoed`` id (a job's or a group's)."""
    return {
        "type": "object",
        "description": description,
        "required": [echoed, "error"],
        "properties": {
            echoed: _nullable({"type": "string", "maxLength": ECHO_LENGTH}),
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {
                    "type": {"type": "string", "enum": list(_ERROR_TYPES)},
                    "message": {"type": "string"},
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    }


def _schemas() -> dict[str, Any]:
    timestamp = _nullable({"type": "string", "format": "date-time"})
    return {
        "State": {"type": "string", "enum": [state.value for state in State]},
        "Progress": {
            "type": "object",
            "required": ["current", "total", "percent", "message"],
            "properties": {
                "current": {"type": "number", "minimum": 0},
                "total": _nullable({"type": "number", "minimum": 0}),
                "percent": _nullable({"type": "number"}),
                "message": _nullable({"type": "string", "maxLength": MAX_MESSAGE_LENGTH}),
            },
            "additionalProperties": False,
        },
        "JobError": {
            "type": "object",
            "description": "Why the job failed: the exception's type and message, no traceback.",
            "required": ["type", "message"],
            "properties": {
                "type": {"type": "string", "maxLength": MAX_ERROR_TYPE_LENGTH},
                "message": {"type": "string", "maxLength": MAX_ERROR_MESSAGE_LENGTH},
            },
            "additionalProperties": False,
        },
        "HistoryEntry": {
            "type": "object",
            "description": (
                "One thing that happened to the job. `attempt` is its attempt count after it; "
                "`error` a failed attempt's error; `retry_at` when the next attempt was due, on "
                "`retrying` where the queue said."
            ),
            "required": ["at", "event", "attempt", "error", "retry_at"],
            "properties": {
                "at": {"type": "string", "format": "date-time"},
                "event": {"type": "string", "enum": [event.value for event in HistoryEvent]},
                "attempt": {"type": "integer", "minimum": 0},
                "error": _nullable(_ref("JobError")),
                "retry_at": timestamp,
            },
            "additionalProperties": False,
        },
        "VerifyBody": {
            "type": "object",
            "description": (
                "A job's status, as `immortus.status()` gives it. The job's `meta` keys are "
                "merged at the top level as additional properties; the keys below always win."
            ),
            "required": list(BODY_KEYS),
            "properties": {
                "job_id": {"type": "string"},
                "job_class": _nullable({"type": "string"}),
                "status": _ref("State"),
                "completed": {"type": "boolean"},
                "success": _nullable({"type": "boolean"}),
                "progress": _nullable(_ref("Progress")),
                "error": _nullable(_ref("JobError")),
                "attempts": {"type": "integer", "minimum": 0},
                "enqueued_at": timestamp,
                "started_at": timestamp,
                "finished_at": timestamp,
                "certain": {
                    "type": "boolean",
                    "description": "False when the status is an inference the queue cannot "
                    "confirm.",
                },
                "retry_at": {
                    **timestamp,
                    "description": "When a `retrying` job's next attempt is due, where the "
                    "queue said; else null.",
                },
                "history": {
                    "type": "array",
                    "description": (
                        "The job's past events, oldest first (the latest "
                        f"{MAX_HISTORY} at most): only when asked with `history=1`; empty when "
                        "its strategy keeps no history."
                    ),
                    "maxItems": MAX_HISTORY,
                    "items": _ref("HistoryEntry"),
                },
            },
            "additionalProperties": True,
            "examples": [
                {
                    "job_id": _EXAMPLE_ID,
                    "job_class": _EXAMPLE_CLASS,
                    "status": "started",
                    "completed": False,
                    "success": None,
                    "progress": {
                        "current": 37,
                        "total": 100,
                        "percent": 37.0,
                        "message": "row 37",
                    },
                    "error": None,
                    "attempts": 1,
                    "enqueued_at": "2026-01-02T10:00:00.000Z",
                    "started_at": "2026-01-02T10:00:01.000Z",
                    "finished_at": None,
                    "certain": True,
                    "retry_at": None,
                }
            ],
        },
        "ErrorBody": _error_body(
            "job_id",
            "A refused or failed request: a fixed or input-describing message, never a "
            "traceback. `job_id` echoes at most "
            f"{ECHO_LENGTH} printable characters of the one asked about.",
        ),
        "NotFoundBody": {
            "description": (
                "An unknown job, an untracked job class or a missing, forged or expired token "
                "(all the `unknown` verify body of the job asked about), or a path that is no "
                "route (an error body of type `NotFound`)."
            ),
            "anyOf": [_ref("VerifyBody"), _ref("ErrorBody")],
        },
        "StreamEvent": {
            "type": "object",
            "description": (
                "One Server-Sent Event (OpenAPI 3.1: the schema of each event): `data` is a "
                "verify body, or an error body in an `error` event."
            ),
            "required": ["data"],
            "properties": {
                "event": {"type": "string", "enum": ["message", "error"]},
                "data": {
                    "type": "string",
                    "contentMediaType": _JSON,
                    "contentSchema": {"anyOf": [_ref("VerifyBody"), _ref("ErrorBody")]},
                },
            },
        },
        "BatchItem": {
            "description": "A job, or a group (with the group's token).",
            "oneOf": [_ref("JobItem"), _ref("GroupItem")],
        },
        "JobItem": {
            "type": "object",
            "required": ["job_id"],
            "properties": {
                "job_id": _name("job id", in_path=False, allow_spaces=True),
                "job_class": _nullable(_name("job class", in_path=False, allow_spaces=False)),
                "token": _nullable({"type": "string"}),
            },
            "not": {"required": ["group_id"]},
            "additionalProperties": True,
        },
        "GroupItem": {
            "type": "object",
            "required": ["group_id"],
            "properties": {
                "group_id": _name("group id", in_path=False, allow_spaces=True),
                "token": _nullable({"type": "string"}),
            },
            "not": {"required": ["job_id"]},
            "additionalProperties": True,
        },
        "GroupBody": {
            "type": "object",
            "description": (
                "A group's aggregate answer, read in one store read whatever its size: its "
                "members by state (`jobs`), `completed` of `total` members, the combined "
                "`progress`, the first member's error. The group has ended once `status` is a "
                "completed state (`finished`, `failed`, `cancelled`); `unknown` (404): no member "
                "recorded, or a bad token."
            ),
            "required": [
                "group_id",
                "status",
                "total",
                "completed",
                "progress",
                "jobs",
                "error",
                "updated_at",
            ],
            "properties": {
                "group_id": {"type": "string"},
                "status": _ref("State"),
                "total": {"type": "integer", "minimum": 0},
                "completed": {"type": "integer", "minimum": 0},
                "progress": _nullable(
                    {
                        "type": "object",
                        "required": ["fraction", "percent"],
                        "properties": {
                            "fraction": {"type": "number", "minimum": 0, "maximum": 1},
                            "percent": {"type": "number", "minimum": 0, "maximum": 100},
                        },
                        "additionalProperties": False,
                    }
                ),
                "jobs": {
                    "type": "object",
                    "propertyNames": _ref("State"),
                    "additionalProperties": {"type": "integer", "minimum": 1},
                },
                "error": _nullable(_ref("JobError")),
                "updated_at": timestamp,
            },
            "additionalProperties": False,
            "examples": [
                {
                    "group_id": "import-2026-01-02",
                    "status": "started",
                    "total": 1000,
                    "completed": 370,
                    "progress": {"fraction": 0.3712, "percent": 37.12},
                    "jobs": {"started": 12, "created": 618, "finished": 369, "failed": 1},
                    "error": {"type": "ValueError", "message": "row 17: bad date"},
                    "updated_at": "2026-01-02T10:00:01.000Z",
                }
            ],
        },
        "GroupErrorBody": _error_body(
            "group_id",
            "A refused or failed group request: `group_id` echoes at most "
            f"{ECHO_LENGTH} printable characters of the one asked about.",
        ),
        "BatchRequest": {
            "type": "object",
            "description": (
                f"At most {MAX_BATCH} jobs and {MAX_BATCH_BYTES} bytes; unknown keys are "
                "ignored. Sent as `application/json` (parameters such as `charset` allowed): "
                "any other Content-Type is a 415."
            ),
            "required": ["jobs"],
            "properties": {
                "jobs": {"type": "array", "maxItems": MAX_BATCH, "items": _ref("BatchItem")},
            },
            "additionalProperties": True,
        },
        "BatchBody": {
            "type": "object",
            "description": (
                "Each item's answer in the order asked: a verify body (200 or the 404 "
                "`unknown` body) or an error body (500, 503); a group's body for a group item."
            ),
            "required": ["jobs"],
            "properties": {
                "jobs": {"type": "array", "items": _ref("ItemBody")},
            },
            "additionalProperties": False,
        },
        "ItemBody": {
            "anyOf": [
                _ref("VerifyBody"),
                _ref("ErrorBody"),
                _ref("GroupBody"),
                _ref("GroupErrorBody"),
            ],
        },
        "JobFrame": {
            "type": "object",
            "description": (
                "One job's answer on the multi-job stream: its position in the request's "
                "`jobs`, the status code and body a verify of it would have answered."
            ),
            "required": ["index", "code", "body"],
            "properties": {
                "index": {"type": "integer", "minimum": 0, "maximum": MAX_BATCH - 1},
                "code": {"type": "integer", "enum": [200, 404, 500, 503]},
                "body": _ref("ItemBody"),
            },
            "additionalProperties": False,
        },
        "MultiStreamEvent": {
            "type": "object",
            "description": (
                "One Server-Sent Event of the multi-job stream: a `job` event (a JobFrame) "
                "for each job now and at each change of its body, until its body is completed "
                "or its code is 404 or 500; one `end` event (`{}`) once every job has ended. "
                "At the stream's lifetime the server sends `retry: 2000` and closes without "
                "`end`: post the jobs that have not ended again."
            ),
            "required": ["event", "data"],
            "properties": {
                "event": {"type": "string", "enum": ["job", "end"]},
                "data": {
                    "type": "string",
                    "contentMediaType": _JSON,
                    "contentSchema": {
                        "anyOf": [
                            _ref("JobFrame"),
                            {"type": "object", "maxProperties": 0},
                        ]
                    },
                },
            },
        },
        "CancelRequest": {
            "type": "object",
            "description": (
                f"At most {MAX_CANCEL_BYTES} bytes; unknown keys (such as `job_id`) are "
                "ignored. Sent as `application/json`: any other Content-Type is a 415."
            ),
            "properties": {"token": _nullable({"type": "string"})},
            "additionalProperties": True,
        },
    }


def _header(value: str | None, description: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"} if value is None else {"const": value}
    return {"description": description, "required": True, "schema": schema}


_NO_STORE: Final = _header("no-store", "Statuses change: never cached.")
_NOSNIFF: Final = _header("nosniff", "Never sniffed as HTML.")
_RETRY_AFTER: Final = _header(None, "Seconds to wait before asking for a stream again.")
_RETRY_AFTER_OPTIONAL: Final = {**_RETRY_AFTER, "required": False}


def _json_answer(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"Cache-Control": _NO_STORE, "X-Content-Type-Options": _NOSNIFF},
        "content": {_JSON: {"schema": _ref(schema)}},
    }


_STREAM_HEADERS: Final = {
    "Cache-Control": _NO_STORE,
    "X-Content-Type-Options": _NOSNIFF,
    "X-Accel-Buffering": _header("no", "Proxies must not buffer the stream."),
}
#: A cancel's answer with the job's verify body (200, 202, 409).
_CANCEL_BODY: Final = _json_answer("The job's verify body.", "VerifyBody")


def _responses() -> dict[str, Any]:
    return {
        "Verified": _json_answer("A known job.", "VerifyBody"),
        "BadRequest": _json_answer(
            "Malformed input: a job id or job class no job can have; the message says which.",
            "ErrorBody",
        ),
        "NotFound": _json_answer(
            "An unknown job, an untracked job class, a missing, forged or expired token (one "
            "body for all three), or a path under the prefix that is no route.",
            "NotFoundBody",
        ),
        "StrategyFailed": _json_answer(
            "The job's tracking strategy failed (logged on the server, with its traceback), "
            "or the routes are not secured: no secret key, and not declared open "
            "(`EndpointsNotSecured`, the message says which setting to make).",
            "ErrorBody",
        ),
        "Unavailable": _json_answer(
            "The job store or queue backend cannot be reached.", "ErrorBody"
        ),
        "Stream": {
            "description": (
                "Server-Sent Events. 200: a `data: {verify body}` frame now and at each change, "
                "`: heartbeat` comments, the end after a completed body; at the stream's "
                "lifetime a `retry:` field and the end (the browser reconnects). Any other code: "
                "one `event: error` frame whose data is the answer verify gives, then the end."
            ),
            "headers": _STREAM_HEADERS,
            "content": {_EVENT_STREAM: {"schema": _ref("StreamEvent")}},
        },
        "StreamUnavailable": {
            "description": (
                "The store cannot be reached (one `event: error` frame, as for the Stream "
                "answer), or the process holds as many streams as it may (a JSON error body of "
                "type `TooManyStreams`, with `Retry-After`): poll meanwhile."
            ),
            "headers": {
                "Cache-Control": _NO_STORE,
                "X-Content-Type-Options": _NOSNIFF,
                "Retry-After": _RETRY_AFTER_OPTIONAL,
            },
            "content": {
                _EVENT_STREAM: {"schema": _ref("StreamEvent")},
                _JSON: {"schema": _ref("ErrorBody")},
            },
        },
        "TooManyStreams": {
            "description": (
                "This client (its token or subject) holds as many streams as it may "
                "(`TooManyStreams`): poll, or retry after `Retry-After` seconds."
            ),
            "headers": {
                "Cache-Control": _NO_STORE,
                "X-Content-Type-Options": _NOSNIFF,
                "Retry-After": _RETRY_AFTER,
            },
            "content": {_JSON: {"schema": _ref("ErrorBody")}},
        },
        "StreamNotFound": {
            "description": (
                "The stream's 404: one `event: error` frame with the unknown body, as for the "
                "Stream answer; or, when the server's router cannot match the path at all (a "
                "job id holding a line break, under Starlette), the JSON 404 of a path under "
                "the prefix that is no route."
            ),
            "headers": {"Cache-Control": _NO_STORE, "X-Content-Type-Options": _NOSNIFF},
            "content": {
                _EVENT_STREAM: {"schema": _ref("StreamEvent")},
                _JSON: {"schema": _ref("NotFoundBody")},
            },
        },
    }


def _parameters() -> dict[str, Any]:
    return {
        "JobId": {
            "name": "job_id",
            "in": "path",
            "required": True,
            "description": "The queue's id of the job, percent-encoded.",
            "schema": _name("job id", in_path=True, allow_spaces=True),
            "example": _EXAMPLE_ID,
        },
        "JobClass": {
            "name": "job_class",
            "in": "path",
            "required": True,
            "description": (
                "The tracked job class (declared with `@immortus.track`); looked up, never "
                "imported: an untracked one is a 404, unless a global strategy answers for it."
            ),
            "schema": _name("job class", in_path=True, allow_spaces=False),
            "example": _EXAMPLE_CLASS,
        },
        "Token": {
            "name": "token",
            "in": "query",
            "required": False,
            "description": (
                "The job's token from `render_job`, required when the server has a secret key; "
                "a missing, forged, expired or over-long (200+ characters) one is the 404 of an "
                "unknown job. Ignored on a server declared open (without a secret key)."
            ),
            "schema": {"type": "string"},
        },
        "GroupId": {
            "name": "group_id",
            "in": "path",
            "required": True,
            "description": "The group's id (`immortus.group().group_id`), percent-encoded.",
            "schema": _name("group id", in_path=True, allow_spaces=True),
            "example": "import-2026-01-02",
        },
        "GroupToken": {
            "name": "token",
            "in": "query",
            "required": False,
            "description": (
                "The group's token from `render_group`, required when the server has a secret "
                "key; a missing, forged or expired one (or a job's token) is the 404 of an "
                "unknown group."
            ),
            "schema": {"type": "string"},
        },
        "History": {
            "name": "history",
            "in": "query",
            "required": False,
            "description": (
                "`1` or `true` adds the job's attempt history (`history`) to a 200 body; `0`, "
                "`false` or no parameter leaves it out. Any other value is a 400."
            ),
            "schema": {"type": "string", "enum": list(HISTORY_VALUES)},
        },
    }


def _path_parameters(route: Route) -> list[dict[str, str]]:
    names = {"job_id": "JobId", "job_class": "JobClass", "group_id": "GroupId"}
    return [_ref_parameter(names[name]) for name in route.parameters]


def _verify(route: Route) -> dict[str, Any]:
    return {
        "parameters": [
            *_path_parameters(route),
            _ref_parameter("Token"),
            _ref_parameter("History"),
        ],
        "responses": {
            "200": _ref_response("Verified"),
            "400": _ref_response("BadRequest"),
            "404": _ref_response("NotFound"),
            "500": _ref_response("StrategyFailed"),
            "503": _ref_response("Unavailable"),
        },
    }


def _stream(route: Route) -> dict[str, Any]:
    stream = _ref_response("Stream")
    return {
        "parameters": [*_path_parameters(route), _ref_parameter("Token")],
        "responses": {
            **dict.fromkeys(("200", "400", "500"), stream),
            "404": _ref_response("StreamNotFound"),
            "429": _ref_response("TooManyStreams"),
            "503": _ref_response("StreamUnavailable"),
        },
    }


def _stream_jobs(route: Route) -> dict[str, Any]:
    refused = _batch(route)["responses"]
    return {
        "description": (
            "The request body is the batch's. A refusal of the whole request is a JSON answer; "
            "otherwise one event stream carries every job (see MultiStreamEvent). The stream "
            "takes one slot of the stream limits, counted against the first job's token."
        ),
        "requestBody": {"required": True, "content": {_JSON: {"schema": _ref("BatchRequest")}}},
        "responses": {
            "200": {
                "description": "Server-Sent Events: `job` frames, then `end` (or `retry:`).",
                "headers": _STREAM_HEADERS,
                "content": {_EVENT_STREAM: {"schema": _ref("MultiStreamEvent")}},
            },
            "400": refused["400"],
            "415": refused["415"],
            "429": _ref_response("TooManyStreams"),
            "500": refused["500"],
            "503": _json_answer(
                "The process holds as many streams as it may (`TooManyStreams`, with "
                "`Retry-After`): poll meanwhile.",
                "ErrorBody",
            ),
        },
    }


def _cancel(route: Route) -> dict[str, Any]:
    return {
        "description": (
            "Only for a job class declared with `cancellable=True`. Checked in order: the "
            "input (400), the token (404, the answer of an unknown job), the class's opt-in "
            "(405), then the cancel itself. Django: CSRF-protected (send `X-CSRFToken`)."
        ),
        "parameters": _path_parameters(route),
        "requestBody": {"required": True, "content": {_JSON: {"schema": _ref("CancelRequest")}}},
        "responses": {
            "200": {**_CANCEL_BODY, "description": "The job is cancelled (its body)."},
            "202": {**_CANCEL_BODY, "description": "The job was asked to stop and still runs."},
            "400": _ref_response("BadRequest"),
            "403": {
                "description": "Django only: the CSRF middleware refused a request without "
                "its CSRF token.",
                "content": {"text/html": {"schema": {"type": "string"}}},
            },
            "404": _ref_response("NotFound"),
            "405": _json_answer(
                "The job class did not opt in to cancelling, or nothing can cancel the job "
                "(`NotCancellable`).",
                "ErrorBody",
            ),
            "409": {**_CANCEL_BODY, "description": "The job had already ended (its body)."},
            "415": _batch(route)["responses"]["415"],
            "500": _ref_response("StrategyFailed"),
            "503": _ref_response("Unavailable"),
        },
    }


def _batch(route: Route) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {_JSON: {"schema": _ref("BatchRequest")}},
        },
        "responses": {
            "200": _json_answer("One answer per job, in order.", "BatchBody"),
            "400": _json_answer(
                "The body is too large, not JSON, not of the documented shape, holds too "
                "many jobs or names a malformed job id or job class; the message names the "
                "place (`jobs[3].job_id: ...`).",
                "ErrorBody",
            ),
            "415": _json_answer(
                "The request's Content-Type is not `application/json` "
                "(`UnsupportedMediaType`): a page of another origin cannot send that type "
                "without a CORS preflight, which the routes never grant.",
                "ErrorBody",
            ),
            "500": _json_answer(
                "The routes are not secured: no secret key, and not declared open "
                "(`EndpointsNotSecured`).",
                "ErrorBody",
            ),
        },
    }


def _group(route: Route) -> dict[str, Any]:
    return {
        "description": (
            "One store read whatever the group's size. A group is also followed on the "
            "multi-job stream and in a batch, as an item `{group_id, token}`."
        ),
        "parameters": [*_path_parameters(route), _ref_parameter("GroupToken")],
        "responses": {
            "200": _json_answer("A group with members.", "GroupBody"),
            "400": _json_answer("A group id no group can have.", "GroupErrorBody"),
            "404": {
                "description": (
                    "A group without members or a bad token (its `unknown` body), or a path "
                    "under the prefix that is no route."
                ),
                "headers": {"Cache-Control": _NO_STORE, "X-Content-Type-Options": _NOSNIFF},
                "content": {_JSON: {"schema": {"anyOf": [_ref("GroupBody"), _ref("ErrorBody")]}}},
            },
            "500": _json_answer(
                "The configured store keeps no groups, or the routes are not secured.",
                "GroupErrorBody",
            ),
            "503": _json_answer("The job store cannot be reached.", "GroupErrorBody"),
        },
    }


def _script(route: Route) -> dict[str, Any]:
    return {
        "parameters": [
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "description": "The ETag of a cached copy: 304 if it is still current.",
                "schema": {"type": "string"},
            }
        ],
        "responses": {
            "200": {
                "description": "The file; cacheable for an hour, then revalidated.",
                "headers": {
                    "Cache-Control": _header("public, max-age=3600", "Cache for an hour."),
                    "ETag": _header(None, "The file's version."),
                },
                "content": {SCRIPT_MEDIA_TYPE: {"schema": {"type": "string"}}},
            },
            "304": {"description": "The cached copy named by `If-None-Match` is current."},
            "404": _json_answer("The file is not installed on this server.", "ErrorBody"),
        },
    }


#: The OpenAPI operation of each kind of route (but its ``operationId`` and ``summary``: the
#: route's name and summary).
_OPERATIONS: Final[dict[str, Callable[[Route], dict[str, Any]]]] = {
    "verify": _verify,
    "batch": _batch,
    "stream": _stream,
    "stream_jobs": _stream_jobs,
    "cancel": _cancel,
    "group": _group,
    "script": _script,
}


def _ref_parameter(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def _ref_response(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


_DESCRIPTION: Final = (
    "The job-status routes every immortus web adapter (Starlette/FastAPI, Flask, Django) mounts "
    "under its prefix. Every route but cancel only reads. Any other method on a route (HEAD "
    "and OPTIONS included) answers 405 with an `Allow` header, and a path under the prefix "
    "that is no route answers 404; both with the JSON error body (`MethodNotAllowed`, "
    "`NotFound`). Without a secret key, every route but the script's answers 500 "
    "(`EndpointsNotSecured`) unless the app declared the routes open. Error bodies never carry "
    "a traceback. See docs/web.md and docs/security.md."
)


def openapi_document(prefix: str = "/immortus") -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the routes mounted under ``prefix``.

    A new dict at each call, which the caller may change. Never raises.
    """
    path = prefix.strip("/")
    root = f"/{path}" if path else ""
    paths: dict[str, Any] = {}
    for route in ROUTES:
        operation = {
            "operationId": route.name,
            "summary": route.summary,
            **_OPERATIONS[route.operation](route),
        }
        paths.setdefault(f"{root}{route.path}", {})[route.method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "immortus verify API",
            "version": "1",
            "description": _DESCRIPTION,
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "parameters": _parameters(),
            "responses": _responses(),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print the document as JSON (``python -m immortus.web.openapi [PREFIX]``); return 0."""
    args = sys.argv[1:] if argv is None else list(argv)
    prefix = args[0] if args else "/immortus"
    sys.stdout.write(json.dumps(openapi_document(prefix), indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
