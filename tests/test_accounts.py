"""The LiveVox accounts (``appendq.accounts``): the file, its errors, the default account, and an
existing single-account database upgraded by migration 0008 with nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from appendq.accounts import load_accounts
from appendq.batches import reads
from appendq.db.engine import alembic_config, migrate
from appendq.errors import ConfigError, InvalidValue
from appendq.keys import Keys
from appendq.runtime import Runtime
from tests.conftest import make_settings
from tests.test_infra import fresh_database_url  # noqa: F401  (a fixture)

TWO = """
[accounts.acme]
base_url = "https://api.na4.livevox.com/"
client_name = "ACME"
username = "appendq"
password_env = "ACME_LV_PASSWORD"
access_token_env = "ACME_LV_ACCESS"
timezone = "America/Chicago"

[accounts.beta]
base_url = "http://127.0.0.1:8766"
client_name = "BETA"
username = "bot"
appendable_states = ["playing"]
"""
ACME_ENV = {"ACME_LV_PASSWORD": "acme-pass-9f8e7d", "ACME_LV_ACCESS": "acme-token-1a2b3c"}


def _file(tmp_path: Path, text_: str) -> str:
    path = tmp_path / "accounts.toml"
    path.write_text(text_)
    return str(path)


def test_without_a_file_one_default_account_is_the_livevox_settings() -> None:
    # Given no APPENDQ_ACCOUNTS_FILE, Then one account, default, runs on the process settings
    # and keeps the bare key prefix (a deployment from before accounts drains its queues).
    settings = make_settings(redis_prefix="p", livevox_client_name="SOLO")
    accounts = load_accounts(settings)
    assert list(accounts) == ["default"]
    default = accounts.get_account(None)
    assert default.settings is settings and default.client_name == "SOLO"
    assert default.keys() == Keys("p") and Keys("p").for_account("acme") == Keys("p:acct:acme")


def test_a_file_gives_each_account_its_livevox_settings_and_secrets(tmp_path: Path) -> None:
    # Given two accounts, one on a real LiveVox with its secrets in the environment, one on a
    # local LiveVox without, Then each runs on the process settings with its own LiveVox keys,
    # time zone and states; the local one keeps the process's (simulator) secrets; nothing
    # secret shows in a repr.
    base = make_settings(redis_prefix="p", accounts_file=_file(tmp_path, TWO))
    accounts = load_accounts(base, ACME_ENV)
    assert list(accounts) == ["acme", "beta"]
    acme, beta = accounts["acme"].settings, accounts["beta"].settings
    assert (acme.livevox_base_url, acme.livevox_client_name, acme.timezone) == (
        "https://api.na4.livevox.com",
        "ACME",
        "America/Chicago",
    )
    assert acme.livevox_password.get_secret_value() == ACME_ENV["ACME_LV_PASSWORD"]
    assert acme.livevox_access_token.get_secret_value() == ACME_ENV["ACME_LV_ACCESS"]
    assert beta.livevox_password == base.livevox_password and beta.timezone == base.timezone
    assert beta.livevox_appendable_states == ["PLAYING"] and beta.redis_url == base.redis_url
    assert accounts["beta"].keys() == Keys("p:acct:beta")
    shown = repr(accounts["acme"]) + repr(list(accounts.values()))
    assert not any(secret in shown for secret in ACME_ENV.values())
    assert [a.name for a in accounts.pick("beta, acme")] == ["acme", "beta"]
    with pytest.raises(InvalidValue, match=r"account: no account 'gamma' \(known: acme, beta\)"):
        accounts.get_account("gamma")
    with pytest.raises(InvalidValue, match="account: 'Not A Name' is not an account name"):
        accounts.pick("acme,Not A Name")


@pytest.mark.parametrize(
    "body, expected",
    [
        ('[accounts.acme]\nclient_name = "A"\n', ["base_url is required", "username is required"]),
        (
            TWO.replace('password_env = "ACME_LV_PASSWORD"', 'password = "hunter2-secret"'),
            ["account acme: password: secrets come from the environment: use password_env"],
        ),
        (
            TWO.replace("America/Chicago", "Mars/Olympus"),
            ["account acme: timezone: unknown time zone 'Mars/Olympus'"],
        ),
        (
            TWO.replace("http://127.0.0.1:8766", "ftp://x") + 'colour = "red"\n',
            ["account beta: base_url: an http:// or https:// URL", "unknown key 'colour'"],
        ),
        ("[accounts.Big]\n", ["account names are a-z"]),
        ("[other]\n", ["expected [accounts.NAME] tables only (unknown: other)"]),
        ("[accounts.acme\n", ["not TOML"]),
    ],
)
def test_every_problem_of_the_file_is_named_at_once(
    tmp_path: Path, body: str, expected: list[str]
) -> None:
    # Given a file with mistakes, Then loading it is one ConfigError naming the file and, for
    # each mistake, the account and the key; a secret written in the file is never echoed.
    settings = make_settings(accounts_file=_file(tmp_path, body))
    with pytest.raises(ConfigError) as caught:
        load_accounts(settings, ACME_ENV)
    message = str(caught.value)
    assert all(part in message for part in expected), message
    assert "hunter2-secret" not in message and str(tmp_path) in message


def test_a_real_livevox_needs_its_secrets_in_the_environment(tmp_path: Path) -> None:
    # Given the real-LiveVox account without its environment variables (or without naming
    # them), Then refused, naming the account and the variable: the simulator's secrets are
    # never sent to a real LiveVox. A missing file is named too.
    settings = make_settings(accounts_file=_file(tmp_path, TWO))
    with pytest.raises(ConfigError, match="account acme: password_env: environment variable "):
        load_accounts(settings, {"ACME_LV_ACCESS": "x"})
    unnamed = TWO.replace('access_token_env = "ACME_LV_ACCESS"\n', "")
    with pytest.raises(ConfigError, match="account acme: access_token_env is required"):
        load_accounts(make_settings(accounts_file=_file(tmp_path, unnamed)), ACME_ENV)
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_accounts(make_settings(accounts_file=str(tmp_path / "missing.toml")))


# --- upgrading a single-account database ---------------------------------------------------

_OLD_ROWS = [
    "INSERT INTO batches (id, target, size, status, service_id) VALUES "
    "(1, 'service:1001', 2, 'appended', 1001), (2, 'service:1001', 1, 'ready', 1001)",
    "INSERT INTO records (id, batch_id, position, target, phone1, enqueued_at) VALUES "
    "('00000000-0000-0000-0000-000000000001', 1, 0, 'service:1001', '2125550101', now()),"
    "('00000000-0000-0000-0000-000000000002', 1, 1, 'service:1001', '2125550102', now()),"
    "('00000000-0000-0000-0000-000000000003', 2, 0, 'service:1001', '2125550103', now())",
    "INSERT INTO events (batch_id, to_status, actor) VALUES (1, 'ready', 'w'), (2, 'ready', 'w')",
    "INSERT INTO target_states (target, campaign_id) VALUES ('service:1001', 5001)",
    "INSERT INTO target_events (target, action, actor) VALUES ('service:1001', 'cleared', 'op')",
]
_COUNTS = {
    "batches": 2,
    "records": 3,
    "events": 2,
    "target_states": 1,
    "target_events": 1,
}


def _assert_counts(engine: Engine) -> None:
    with engine.connect() as conn:
        for table, count in _COUNTS.items():
            assert conn.scalar(text(f"SELECT count(*) FROM {table}")) == count, table


def test_upgrading_a_single_account_database_keeps_every_row(
    fresh_database_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Given a database at 0007 (before accounts) with batches, records, events, a target state
    # and a target event, When it is migrated to head, Then every row is kept and belongs to
    # the default account, whose drain finds its open batch; a downgrade keeps them too, and is
    # refused once another account has batches.
    migrate(fresh_database_url, "0007")
    engine = create_engine(fresh_database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for statement in _OLD_ROWS:
                conn.execute(text(statement))
        migrate(fresh_database_url)
        _assert_counts(engine)
        with engine.connect() as conn:
            for table in ("batches", "records", "target_states", "target_events"):
                accounts = conn.scalars(text(f"SELECT DISTINCT livevox_account FROM {table}"))
                assert list(accounts) == ["default"], table
        settings = make_settings(database_url=fresh_database_url, state_dir=str(tmp_path))
        with Runtime.build(settings) as rt, rt.sessions() as session:
            found = reads.next_open_batch(session, "default", "service:1001")
            assert found is not None and found.id == 2 and found.livevox_account == "default"
            assert reads.next_open_batch(session, "acme", "service:1001") is None
        command.downgrade(alembic_config(fresh_database_url), "0007")
        _assert_counts(engine)
        migrate(fresh_database_url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO batches (id, livevox_account, target, size, status) "
                    "VALUES (9, 'acme', 'service:7', 1, 'ready')"
                )
            )
        with pytest.raises(RuntimeError, match="batches of accounts other than 'default'"):
            command.downgrade(alembic_config(fresh_database_url), "0007")
    finally:
        engine.dispose()


def test_the_example_file_loads() -> None:
    # The README's example (two accounts on the simulator) is a valid accounts file.
    example = Path(__file__).resolve().parents[1] / "examples" / "accounts.toml"
    accounts = load_accounts(make_settings(accounts_file=str(example)), {})
    assert [(a.name, a.client_name) for a in accounts.values()] == [
        ("default", "SIMCLIENT"),
        ("beta", "BETA"),
    ]
