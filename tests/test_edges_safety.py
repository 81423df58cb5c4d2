"""Small guards of issue "Contain every bad input": the log scrubber walks structured fields, and
the simulator's default credentials never go to a real LiveVox."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from appendq.errors import ConfigError
from appendq.logs import JsonFormatter, Scrubber
from appendq.settings import Settings
from tests.support.procs import run_cli

SECRET = "tok-9f8e7d6c5b4a"


def _emit(**extra: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(Scrubber([SECRET]))
    logger = logging.getLogger("test.scrub")
    logger.propagate = False
    logger.handlers[:] = [handler]
    try:
        logger.error("x", extra=extra)
    finally:
        logger.handlers[:] = []
    return stream.getvalue()


@pytest.mark.parametrize(
    "extra",
    [
        {"data": {"t": f"2125551234 {SECRET}"}},
        {"data": {"traceback": [f"line 1 {SECRET}", ("2125551234",)]}},
        {"deep": {"a": {"b": {"c": [{"d": f"call 212-555-1234 with {SECRET}"}]}}}},
        {"obj": ValueError(f"2125551234 {SECRET}")},
    ],
)
def test_structured_log_fields_are_scrubbed_however_nested(extra: dict[str, object]) -> None:
    # Given a log call whose extra= holds the secret and a phone inside dicts, lists, tuples or an
    # object (Celery's data.traceback does this), When it is formatted as JSON, Then neither
    # appears in clear; the phone's last four digits remain.
    line = _emit(**extra)
    assert SECRET not in line and "2125551234" not in line and "555-1234" not in line
    assert "1234" in line
    json.loads(line)


def test_numbers_and_flags_in_extra_pass_unchanged() -> None:
    # Given numeric and boolean extra fields, When scrubbed, Then they keep their JSON types.
    event = json.loads(_emit(batch=12, ok=True, ratio=0.5, none=None))
    assert (event["batch"], event["ok"], event["ratio"], event["none"]) == (12, True, 0.5, None)


def test_default_credentials_never_go_to_a_real_livevox() -> None:
    # Given APPENDQ_LIVEVOX_BASE_URL at a real LiveVox and no credentials set, When a process
    # that talks to LiveVox starts, Then it refuses, naming both settings; with them set, or with
    # a local simulator, it starts.
    real = Settings(livevox_base_url="https://api.na4.livevox.com")
    with pytest.raises(ConfigError) as refused:
        real.require_livevox_credentials()
    assert "APPENDQ_LIVEVOX_ACCESS_TOKEN" in str(refused.value)
    assert "APPENDQ_LIVEVOX_PASSWORD" in str(refused.value)
    assert "simulator-password" not in str(refused.value)
    configured = real.model_copy(
        update={
            "livevox_access_token": SecretStr("a-real-token"),
            "livevox_password": SecretStr("a-real-password"),
        }
    )
    configured.require_livevox_credentials()
    Settings(livevox_base_url="http://127.0.0.1:9999").require_livevox_credentials()


def test_the_worker_refuses_to_start_without_credentials(tmp_path: Path) -> None:
    # Given a real LiveVox URL and no credentials, When `appendq worker` starts, Then it exits
    # non-zero at once with one line naming what is missing, and never logs in.
    result = run_cli(
        ["worker"],
        {
            "APPENDQ_LIVEVOX_BASE_URL": "https://api.na4.livevox.com",
            "APPENDQ_STATE_DIR": str(tmp_path),
        },
        check=False,
        timeout=60,
    )
    assert result.returncode != 0
    assert "APPENDQ_LIVEVOX_PASSWORD" in result.stderr
    assert "Traceback" not in result.stderr
