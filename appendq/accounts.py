"""The LiveVox accounts one appendq serves, each with its own session, rate budget, campaign cache,
halt, dedupe day (its own time zone) and drain lock.

Without ``APPENDQ_ACCOUNTS_FILE`` there is one account, ``default``, made of the
``APPENDQ_LIVEVOX_*`` settings: a single-account deployment changes nothing. With it, the file
(TOML) has one table per account::

    [accounts.acme]
    base_url = "https://api.na4.livevox.com"
    client_name = "ACME"
    username = "appendq"
    password_env = "ACME_LV_PASSWORD"      # secrets come from the environment, never the file
    access_token_env = "ACME_LV_ACCESS"
    timezone = "America/Chicago"           # optional: APPENDQ_TIMEZONE
    api_version = "v6.0"                   # optional: APPENDQ_LIVEVOX_API_VERSION
    appendable_states = ["PLAYING", "PAUSED"]  # optional: APPENDQ_LIVEVOX_APPENDABLE_STATES

An account is the process's Settings with its LiveVox keys replaced (``Account.settings``), so
the client, the resolver and the drain read their account's values where they always read them.
Its Redis keys live under a prefix of its own (``Keys.for_account``); the ``default`` account
keeps the bare prefix, so the queues of a deployment that predates accounts are drained as they
were. Every problem of the file is reported at once, naming the account and the key; a secret
is never echoed.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import SecretStr
from redis import Redis

from appendq.errors import ConfigError, InvalidValue
from appendq.keys import DEFAULT_ACCOUNT, Keys
from appendq.queue.record_queue import RecordQueue
from appendq.settings import Settings

#: An account's name: it is part of Redis keys, Celery queue names and metric labels.
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_REQUIRED = ("base_url", "client_name", "username")
_SECRETS = {"password_env": "livevox_password", "access_token_env": "livevox_access_token"}
_OPTIONAL = {
    "timezone": "timezone",
    "api_version": "livevox_api_version",
    "appendable_states": "livevox_appendable_states",
}
_KNOWN = (*_REQUIRED, *_SECRETS, *_OPTIONAL)


def check_name(name: object, field: str = "account") -> str:
    """``name`` as an account name (``NAME``); InvalidValue naming ``field`` otherwise."""
    if not isinstance(name, str) or not NAME.match(name):
        shown = repr(name)[:40]
        raise InvalidValue(field, f"{shown} is not an account name (a-z, 0-9, _ and -, 1-32)")
    return name


@dataclass(frozen=True)
class Account:
    """One LiveVox account: its name and the Settings it runs under."""

    name: str
    settings: Settings

    def keys(self) -> Keys:
        return Keys(self.settings.redis_prefix).for_account(self.name)

    @property
    def client_name(self) -> str:
        return self.settings.livevox_client_name

    def __repr__(self) -> str:
        s = self.settings
        return f"Account({self.name!r}, {s.livevox_client_name!r} at {s.livevox_base_url})"


class Accounts(Mapping[str, Account]):
    """The accounts, in the file's order (the default account alone without a file)."""

    def __init__(self, accounts: Mapping[str, Account]) -> None:
        self._accounts = dict(accounts)

    def __getitem__(self, name: str) -> Account:
        return self._accounts[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._accounts)

    def __len__(self) -> int:
        return len(self._accounts)

    def get_account(self, name: str | None, field: str = "account") -> Account:
        """The account ``name`` (None: ``default``); InvalidValue naming ``field`` when there is
        no such account (the message lists the known ones)."""
        wanted = DEFAULT_ACCOUNT if name is None else check_name(name, field)
        found = self._accounts.get(wanted)
        if found is None:
            known = ", ".join(self._accounts) or "none"
            raise InvalidValue(field, f"no account {wanted!r} (known: {known})")
        return found

    def pick(self, names: str | None) -> list[Account]:
        """The accounts named in ``a,b`` (None or empty: every one), in the file's order."""
        if not names:
            return list(self._accounts.values())
        wanted = {self.get_account(n.strip()).name for n in names.split(",") if n.strip()}
        return [a for a in self._accounts.values() if a.name in wanted]


def load_accounts(settings: Settings, environ: Mapping[str, str] | None = None) -> Accounts:
    """The accounts of ``settings`` (see the module docstring); ConfigError listing every
    problem of the file."""
    if not settings.accounts_file:
        return Accounts({DEFAULT_ACCOUNT: Account(DEFAULT_ACCOUNT, settings)})
    env = os.environ if environ is None else environ
    tables = _read_file(Path(settings.accounts_file))
    accounts: dict[str, Account] = {}
    problems: list[str] = []
    for name, table in tables.items():
        try:
            accounts[name] = Account(name, _account_settings(settings, name, table, env))
        except _Problems as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(f"{settings.accounts_file}: " + "; ".join(problems))
    return Accounts(accounts)


def unconfigured(client: Redis, prefix: str, accounts: Accounts) -> dict[str, int]:
    """Accounts that still have records queued in Redis (under ``{prefix}:acct:NAME``) but are
    not in the accounts file any more, with how many: nothing drains them until the account is
    put back."""
    found: dict[str, int] = {}
    for raw in client.scan_iter(match=f"{prefix}:acct:*:targets", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        name = key[len(prefix) + len(":acct:") : -len(":targets")]
        if name in accounts or not NAME.match(name):
            continue
        queue = RecordQueue(client, Keys(prefix).for_account(name), name)
        depth = queue.depth()
        if depth:
            found[name] = depth
    return found


class _Problems(Exception):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"APPENDQ_ACCOUNTS_FILE {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"APPENDQ_ACCOUNTS_FILE {path}: not TOML: {exc}") from None
    extra = sorted(set(data) - {"accounts"})
    tables = data.get("accounts")
    if extra or not isinstance(tables, dict) or not tables:
        raise ConfigError(
            f"APPENDQ_ACCOUNTS_FILE {path}: expected [accounts.NAME] tables only"
            + (f" (unknown: {', '.join(extra)})" if extra else "")
        )
    bad = [n for n in tables if not NAME.match(n)]
    if bad:
        raise ConfigError(
            f"APPENDQ_ACCOUNTS_FILE {path}: account names are a-z, 0-9, _ and - (1-32, a "
            f"letter first): {', '.join(repr(n)[:40] for n in bad)}"
        )
    return tables


def _account_settings(base: Settings, name: str, table: object, env: Mapping[str, str]) -> Settings:
    """``base`` with the account's LiveVox keys; _Problems naming the account and each key."""
    if not isinstance(table, dict):
        raise _Problems([f"account {name}: must be a table"])
    problems = [_unknown(name, key) for key in table if key not in _KNOWN]
    problems += [f"account {name}: {key} is required" for key in _REQUIRED if key not in table]
    update: dict[str, Any] = {}
    for key in (*_REQUIRED, *_OPTIONAL):
        if key in table:
            try:
                update[_field(key)] = _value(key, table[key])
            except ValueError as exc:
                problems.append(f"account {name}: {key}: {exc}")
    if problems:
        raise _Problems(problems)
    scoped = base.model_copy(update=update)
    secrets, missing = _secrets(name, table, env, local=scoped.livevox_is_local)
    if missing:
        raise _Problems(missing)
    return scoped.model_copy(update=secrets)


def _unknown(name: str, key: str) -> str:
    if key in ("password", "access_token"):
        return f"account {name}: {key}: secrets come from the environment: use {key}_env"
    return f"account {name}: unknown key {key!r}"


def _field(key: str) -> str:
    return _OPTIONAL.get(key) or f"livevox_{key}"


def _value(key: str, value: object) -> object:
    """One plain key of an account table, checked."""
    if key == "appendable_states":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ValueError("a non-empty list of status words")
        return [v.strip().upper() for v in value]
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a non-empty string")
    if key == "timezone":
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
    if key == "base_url" and not value.startswith(("http://", "https://")):
        raise ValueError("an http:// or https:// URL")
    return value.rstrip("/") if key == "base_url" else value


def _secrets(
    name: str, table: dict[str, Any], env: Mapping[str, str], *, local: bool
) -> tuple[dict[str, SecretStr], list[str]]:
    """The account's password and access token, read from the environment variables the table
    names. A local LiveVox (the simulator) may go without: it takes the simulator's defaults; a
    real one may not (the simulator's secrets are never sent to it)."""
    found: dict[str, SecretStr] = {}
    missing: list[str] = []
    for key, field in _SECRETS.items():
        variable = table.get(key)
        if variable is None:
            if not local:
                missing.append(f"account {name}: {key} is required (LiveVox is not local)")
            continue
        if not isinstance(variable, str) or not variable:
            missing.append(f"account {name}: {key} must name an environment variable")
        elif env.get(variable):
            found[field] = SecretStr(env[variable])
        elif not local:
            missing.append(f"account {name}: {key}: environment variable {variable} is not set")
    return found, missing
