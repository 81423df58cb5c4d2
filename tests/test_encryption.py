"""Personal data encrypted at rest (issue #11): what PostgreSQL holds of a record, read raw; a
payload no configured key opens; the development key; the key settings. Real Redis, PostgreSQL
and the simulator over HTTP."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr, ValidationError

from appendq import crypto
from appendq.batches import reads
from appendq.crypto import PayloadCipher, PayloadUnreadable, cipher_for, new_key
from appendq.db.engine import psycopg_url
from appendq.drain.tick import drain_once
from appendq.errors import ConfigError
from appendq.queue.item import QueuedRecord, new_record_id
from appendq.runtime import Runtime
from appendq.settings import Settings
from producer import Producer
from tests.conftest import Sim, make_settings, queued
from tests.support.batches import persist_claim

CAMPAIGN = 5001
#: A lead with every kind of personal field LiveVox takes.
LEAD = {
    "phone1": "(212) 555-0147",
    "phone2": ["212-555-0188", "+1 646 555 0199"],
    "account": "ACC-778899",
    "firstName": "Marguerite",
    "lastName": "Okonkwo-Lindqvist",
    "email": "marguerite.ok@example.org",
    "dob": "0714",
    "ssn": "987-65-4321",
    "minimumPaymentAmount": "125.40",
    "amountToSpeak": "1899.99",
    "totalAmount": "23456.78",
    "extra1": "owes on card ending 4417",
    "originalAccountNumber": "ORIG-5512-XY",
}
#: Columns that stay clear by design (what audits search and reconciliation matches).
LOOKUP_COLUMNS = {"phone1", "account"}


def leaves(value: Any) -> Iterator[str]:
    """Every field value of a payload, as text (phone2's numbers one by one)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item)
    else:
        yield str(value)


def raw_rows(database_url: str, table: str) -> list[dict[str, Any]]:
    """Every row of ``table`` as PostgreSQL gives it (bytea as bytes, JSON parsed)."""
    with psycopg.connect(psycopg_url(database_url).replace("+psycopg", "")) as conn:
        cur = conn.execute(f"SELECT * FROM {table}")  # a fixed table name, never user input
        names = [c.name for c in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def found_in(row: dict[str, Any], value: str, skip: set[str]) -> list[str]:
    """The columns of ``row`` (but ``skip``, ids and timestamps) that hold ``value``."""
    hits = []
    for name, cell in row.items():
        if name in skip or cell is None or isinstance(cell, uuid.UUID | datetime | int):
            continue
        haystack = bytes(cell) if isinstance(cell, bytes | memoryview) else str(cell).encode()
        if value.encode() in haystack:
            hits.append(name)
    return hits


#: What every log record carries (times, places): the rest is a call's own ``extra=``.
STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in STANDARD}


def keyed(settings: Settings, *keys: str) -> Settings:
    return settings.model_copy(update={"data_keys": [SecretStr(k) for k in keys]})


def test_postgres_holds_no_clear_text_of_any_field(
    sim: Sim, rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a lead with phones, names, email, dob, ssn and amounts, When it is accepted, drained
    # and appended, Then no column of its records row but phone1 and account (clear by design)
    # holds any of its field values, nor does any batch, event or target row, nor any log line
    # (phones aside: the log filter masks them); and decrypting gives LiveVox's record back.
    Producer(rt.queue, dedupe="phone1", tz=rt.settings.tz).enqueue("service:1001", [LEAD])
    (rec,) = queued(rt.redis, rt.keys)
    values = set(leaves(rec.payload))
    with caplog.at_level(logging.DEBUG):
        assert drain_once(rt.drainer()).outcome == "appended"
    url = rt.settings.database_url
    (row,) = raw_rows(url, "records")
    assert row["payload"] is None and row["payload_key"] == rt.cipher.current
    assert (row["phone1"], row["account"]) == (rec.payload["phone1"], "ACC-778899")
    for value in [*values, '"phone1"', '"ssn"']:
        assert found_in(row, value, LOOKUP_COLUMNS) == [], value
    for table in ("batches", "events", "target_states", "target_events"):
        for other in raw_rows(url, table):
            assert [v for v in values if found_in(other, v, set())] == [], (table, other)
    logged = caplog.text + " ".join(str(extras(r)) for r in caplog.records)
    phones = {rec.payload["phone1"], *rec.payload["phone2"]}
    assert [v for v in values - phones if v in logged] == []
    with rt.sessions() as session:
        assert reads.batch_payloads(session, row["batch_id"]) == [rec.payload]
    (at_livevox,) = sim.records(CAMPAIGN)
    assert {k: at_livevox[k] for k in rec.payload} == rec.payload


def test_a_payload_no_configured_key_opens_is_a_clear_error_naming_the_record(
    sim: Sim, settings: Settings
) -> None:
    # Given a batch persisted under key A, When a process that holds only key B reads it to
    # send it, Then the error names the record (never a key) and says what to do; the drain
    # tick reports it as an error for that target, nothing is sent.
    key_a, key_b = new_key(), new_key()
    rt_a = Runtime.build(keyed(settings, key_a))
    rec = QueuedRecord(new_record_id(), 1.7e9, {"phone1": "2125550147", "ssn": "987654321"})
    try:
        rt_a.queue.push("service:1001", [rec])
        claim = rt_a.queue.claim("service:1001", 10)
        with rt_a.sessions() as session:
            batch = persist_claim(session, claim)
        rt_a.queue.ack(claim)
    finally:
        rt_a.close()
    assert batch is not None
    rt_b = Runtime.build(keyed(settings, key_b))
    try:
        with rt_b.sessions() as session, pytest.raises(PayloadUnreadable) as caught:
            reads.batch_payloads(session, batch.id)
        report = drain_once(rt_b.drainer())
    finally:
        rt_b.close()
    message = str(caught.value)
    assert rec.id in message and "APPENDQ_DATA_KEYS" in message
    assert key_a not in message and key_b not in message
    assert report.outcome == "error" and rec.id in (report.reason or "")
    assert sim.calls("append") == []


def test_a_payload_moved_to_another_row_does_not_decrypt() -> None:
    # Given two records sealed under the same key, When one's stored bytes are opened as the
    # other's (a row copied over another), Then it is refused: the record id is bound to it.
    cipher = PayloadCipher([crypto.decode_key(new_key())])
    first, second = new_record_id(), new_record_id()
    sealed, key = cipher.seal(first, {"phone1": "2125550147"})
    assert cipher.open(first, sealed, key) == {"phone1": "2125550147"}
    with pytest.raises(PayloadUnreadable, match=second):
        cipher.open(second, sealed, key)
    damaged = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(PayloadUnreadable, match="does not decrypt"):
        cipher.open(first, damaged, key)


def test_without_keys_a_development_key_is_made_once_and_kept(tmp_path: Path) -> None:
    # Given no APPENDQ_DATA_KEYS, When several processes (threads here) build their cipher at
    # once, Then one key is made under the state dir (mode 0600) and all of them use it; a
    # later start reads the same. With an account on a real LiveVox, no development key: a
    # ConfigError naming the account (other machines' workers could not read its payloads).
    local = make_settings(state_dir=str(tmp_path / "state"), data_keys=[])
    ciphers: list[PayloadCipher] = []
    starts = [threading.Thread(target=lambda: ciphers.append(cipher_for(local))) for _ in range(8)]
    for thread in starts:
        thread.start()
    for thread in starts:
        thread.join()
    path = tmp_path / "state" / crypto.DEV_KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert {c.current for c in ciphers} == {crypto.key_id(crypto.decode_key(path.read_text()))}
    assert cipher_for(local).current == ciphers[0].current
    with pytest.raises(ConfigError, match=r"APPENDQ_DATA_KEYS is not set .*account acme"):
        cipher_for(local, ["acme"])
    remote = local.model_copy(update={"livevox_base_url": "https://api.livevox.com"})
    with pytest.raises(ConfigError, match="account default"):
        Runtime.build(remote)
    assert sorted(p.name for p in path.parent.iterdir()) == [crypto.DEV_KEY_FILE]


def test_key_settings_are_checked_and_never_echoed() -> None:
    # Given keys in APPENDQ_DATA_KEYS, When one is not a key, Then the settings are refused,
    # naming its position, without echoing it; two good keys: the first is the current one.
    good, other = new_key(), new_key()
    with pytest.raises(ValidationError) as caught:
        Settings(data_keys=f"{good},not-a-key-but-a-secret")
    assert "key 2 of 2" in str(caught.value) and "not-a-key-but-a-secret" not in str(caught.value)
    assert good not in str(caught.value)
    keys = Settings(data_keys=f" {good} , {other} ").data_keys
    cipher = PayloadCipher([crypto.decode_key(k.get_secret_value()) for k in keys])
    assert cipher.key_ids == (crypto.key_id(crypto.decode_key(good)), cipher.key_ids[1])
    assert "SecretStr" in repr(keys[0]) and good not in repr(keys)


@pytest.mark.parametrize(
    ("retention", "pii", "days"),
    [(90, None, 90), (90, 30, 30), (90, 90, 90), (0, None, 0), (0, 30, 30)],
)
def test_personal_data_is_never_kept_longer_than_the_batches(
    retention: int, pii: int | None, days: int
) -> None:
    # Given a retention and maybe a personal-data retention, When the settings are read, Then
    # the payloads are kept as long as the batches by default, or less, never more.
    assert Settings(retention_days=retention, pii_retention_days=pii).pii_days == days


@pytest.mark.parametrize(("retention", "pii"), [(90, 91), (90, 0), (30, 365)])
def test_a_personal_data_retention_longer_than_the_batches_is_refused(
    retention: int, pii: int
) -> None:
    with pytest.raises(ValidationError, match="never kept longer"):
        Settings(retention_days=retention, pii_retention_days=pii)
