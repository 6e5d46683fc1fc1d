"""Bounded multipart uploads: refused before an oversized body is read into memory.

A declared Content-Length over the limit is refused before any of the body is
read; without one (chunked uploads) the bytes are counted as they arrive and the
request is refused as soon as the count passes the limit. File parts are spooled
by Starlette (in memory up to 1 MiB, then a temporary file), so memory stays bounded
whatever the limit. Field names are checked against what the endpoint accepts, so a
misspelled field is a clear 400 rather than a confusing "missing" one. A client that
sends nothing for `CLIENT_STALL_TIMEOUT` gets 408; one that disconnects mid-upload
ends the request quietly (499, counted as `client_disconnected`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from app.api import deps
from app.api.delivery import StallWatch, client_stalled
from app.errors import GatewayError, InvalidRequest, PayloadTooLarge, UnsupportedMediaType

M = TypeVar("M", bound=BaseModel)


@dataclass
class Upload:
    """A parsed form: text fields and file parts by name. Close it when done."""

    form: FormData
    fields: dict[str, str]
    files: dict[str, UploadFile]

    async def close(self) -> None:
        await self.form.close()


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The upload exceeds the limit of {limit} bytes (MAX_UPLOAD_BYTES).",
        param=None,
    )


class UploadInterrupted(GatewayError):
    """The client disconnected before its upload was complete."""

    status_code = 499
    error_type = "invalid_request_error"
    default_code = "client_disconnected"


async def _counted(
    request: Request, limit: int, stall_timeout: float | None
) -> AsyncGenerator[bytes, None]:
    total = 0
    chunks = aiter(request.stream())
    # A client that stops sending must not hold its stream slot for good either.
    watch = StallWatch(stall_timeout, client_stalled(stall_timeout))
    try:
        while True:
            try:
                chunk = await watch(anext(chunks))
            except StopAsyncIteration:
                return
            except ClientDisconnect:
                raise UploadInterrupted("The client disconnected during the upload.") from None
            total += len(chunk)
            if total > limit:
                raise _too_large(limit)
            yield chunk
    finally:
        watch.close()


async def read_upload(
    request: Request,
    *,
    max_bytes: int,
    fields: Collection[str],
    files: Collection[str],
    required: Collection[str] | None = None,
) -> Upload:
    """Parse a multipart/form-data body of at most `max_bytes` with the given names;
    the file parts in `required` (default: all of `files`) must be there."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType(
            f"Send multipart/form-data (got {content_type.split(';')[0] or 'no content type'}).",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    parser = MultiPartParser(
        request.headers,
        _counted(request, max_bytes, deps.settings(request).client_stall_timeout),
        max_files=len(files) + 1,
        max_fields=len(fields) + 8,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequest(f"Malformed multipart body: {exc.message}") from exc
    upload = Upload(form, {}, {})
    try:
        for name, value in form.multi_items():
            if name not in fields and name not in files:
                valid = ", ".join([*files, *fields])
                raise InvalidRequest(
                    f"Unknown form field {name!r}. Valid fields: {valid}.",
                    param=name,
                    code="unknown_field",
                )
            if name in upload.fields or name in upload.files:
                raise InvalidRequest(f"Form field {name!r} is given twice.", param=name)
            if name in files:
                if not isinstance(value, UploadFile):
                    raise InvalidRequest(
                        f"{name} must be a file part (multipart filename=...), not a text field.",
                        param=name,
                    )
                upload.files[name] = value
            else:
                if not isinstance(value, str):
                    raise InvalidRequest(f"{name} must be a text field, not a file.", param=name)
                upload.fields[name] = value
        for name in files if required is None else required:
            if name not in upload.files:
                raise InvalidRequest(
                    f"{name} is required: attach the audio file as form field {name!r}.",
                    param=name,
                    code="missing_required_parameter",
                )
    except BaseException:
        await upload.close()
        raise
    return upload


def validate_fields(model: type[M], values: dict[str, str]) -> M:
    """`values` as `model`, with validation errors in the gateway's 400 envelope."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from exc


def openapi_form(
    required: Collection[str], properties: dict[str, dict[str, object]]
) -> dict[str, object]:
    """`openapi_extra` documenting a multipart body parsed by hand."""
    schema = {"type": "object", "required": list(required), "properties": properties}
    return {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    }
