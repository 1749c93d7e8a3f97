"""Translating S3 and botocore errors into tmpwarden's: what a user sees from S3."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError, NoCredentialsError, ParamValidationError

from handler.errors import (
    AccessDeniedError,
    InputError,
    RemoteServiceError,
)
from handler.locations.s3 import translate


def test_non_network_s3_errors_are_permanent_and_say_what_to_do() -> None:
    denied = translate(NoCredentialsError(), "s3://b/k", reading_source=True)
    assert isinstance(denied, AccessDeniedError) and "credentials" in str(denied)
    invalid = translate(
        ParamValidationError(report="Invalid bucket name"), "s3://b/k", reading_source=False
    )
    assert isinstance(invalid, InputError)
    response: Any = {
        "Error": {"Code": "PreconditionFailed"},
        "ResponseMetadata": {"HTTPStatusCode": 412},
    }
    changed = translate(ClientError(response, "GetObject"), "s3://b/k", reading_source=True)
    assert isinstance(changed, RemoteServiceError) and changed.transient
    assert "changed while it was being read" in str(changed)
