"""The payload cipher: the LiveVox record kept for retry (``records.payload_enc``) is encrypted at
rest, and decrypted only to send or re-send it (``appendq.batches.reads.batch_payloads``).

- **Keys**: ``APPENDQ_DATA_KEYS``, comma-separated, each 32 random bytes in urlsafe base64 (the
  format of a Fernet key; ``appendq rotate-keys --new-key`` prints one). The first encrypts,
  every one decrypts: a new key is put first, ``appendq rotate-keys`` re-encrypts what the others
  hold, then they are removed. Without any, a development key is made once under
  ``APPENDQ_STATE_DIR`` (``data-key``, mode 0600), with a loud warning when LiveVox is not local.
- **Algorithm**: AES-256-GCM-SIV (RFC 8452) from ``cryptography``, a random 96-bit nonce per
  record, the record's id as associated data (a payload copied onto another record's row does
  not decrypt); unlike plain GCM it stays safe when random nonces repeat (billions of records
  under one key). Not Fernet: it made the 10,000-record drain cycle 13-36 % slower than without
  encryption, GCM-SIV at most 8 % (``make bench`` measures both; the limit is 10 %).
- **Stored**: ``payload_enc`` = format byte 0x01, nonce (12 bytes), ciphertext and tag (16);
  ``payload_key`` = the key's id: the first 8 hex digits of its SHA-256, which names a key
  without revealing it.

A session's cipher travels in ``session.info`` (``Runtime.build`` puts it there, once per
process): ``cipher_of(session)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

from appendq.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from appendq.settings import Settings

log = logging.getLogger(__name__)

#: Where ``Runtime.build`` puts the cipher in every session's ``info``.
SESSION_KEY = "appendq.payload_cipher"
#: The development key's file under APPENDQ_STATE_DIR.
DEV_KEY_FILE = "data-key"
KEY_BYTES = 32
_FORMAT = b"\x01"
_NONCE = 12


class PayloadUnreadable(ConfigError):
    """A stored payload does not decrypt: its key is not in APPENDQ_DATA_KEYS, or the row was
    altered. Names the record, never a key."""


def new_key() -> str:
    """A fresh key for APPENDQ_DATA_KEYS."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def decode_key(text: str) -> bytes:
    """The 32 bytes of a key; ``ValueError`` (which never echoes it) when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise ValueError("not 32 bytes in urlsafe base64 (`appendq rotate-keys --new-key`)")
    return raw


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


class PayloadCipher:
    """Encrypts a record's payload under the first key; decrypts under any of them."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ConfigError("the payload cipher needs at least one key")
        self._keys: dict[str, AESGCMSIV] = {}
        for key in keys:
            self._keys.setdefault(key_id(key), AESGCMSIV(key))
        self.current = key_id(keys[0])
        self._sealer = self._keys[self.current]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of the keys, the current one first."""
        return tuple(self._keys)

    def seal(self, record_id: str | uuid.UUID, payload: Mapping[str, Any]) -> tuple[bytes, str]:
        """(stored bytes, key id) of a record's payload under the current key."""
        return next(self.seal_each([(record_id, payload)])), self.current

    def seal_each(
        self, records: Iterable[tuple[str | uuid.UUID, Mapping[str, Any]]]
    ) -> Iterator[bytes]:
        """The stored bytes of each record under the current key (``self.current``), one at a
        time: a claim's COPY encrypts a row while PostgreSQL stores the rows before it. Nonces
        are drawn 256 at a time."""
        encrypt, dumps = self._sealer.encrypt, json.dumps
        nonces, at = b"", 0
        for record_id, payload in records:
            if at == len(nonces):
                nonces, at = os.urandom(_NONCE * 256), 0
            nonce = nonces[at : at + _NONCE]
            at += _NONCE
            plain = dumps(payload, separators=(",", ":")).encode()
            yield _FORMAT + nonce + encrypt(nonce, plain, _aad(record_id))

    def _seal_bytes(self, record_id: str | uuid.UUID, plain: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return _FORMAT + nonce + self._sealer.encrypt(nonce, plain, _aad(record_id))

    def open(self, record_id: str | uuid.UUID, blob: bytes, kid: str | None) -> dict[str, Any]:
        """The payload stored as ``blob`` under key ``kid``; ``PayloadUnreadable`` naming the
        record when no configured key opens it."""
        payload: dict[str, Any] = json.loads(self._open_bytes(record_id, blob, kid))
        return payload

    def _open_bytes(self, record_id: str | uuid.UUID, blob: bytes, kid: str | None) -> bytes:
        aead = self._keys.get(kid or "")
        if aead is None:
            raise PayloadUnreadable(
                f"record {record_id}: its payload is encrypted under a key APPENDQ_DATA_KEYS "
                f"does not hold (key id {kid}): put that key back after the current one"
            )
        blob = bytes(blob)
        if blob[:1] != _FORMAT or len(blob) < 1 + _NONCE + 16:
            raise PayloadUnreadable(
                f"record {record_id}: its stored payload is not one appendq wrote"
            )
        try:
            return aead.decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], _aad(record_id))
        except InvalidTag:
            raise PayloadUnreadable(
                f"record {record_id}: its stored payload does not decrypt (altered, or moved "
                "from another record's row)"
            ) from None

    def reseal(self, record_id: str | uuid.UUID, blob: bytes, kid: str | None) -> tuple[bytes, str]:
        """The same payload under the current key (key rotation)."""
        return self._seal_bytes(record_id, self._open_bytes(record_id, blob, kid)), self.current


def _aad(record_id: str | uuid.UUID) -> bytes:
    """The record's id in its canonical text (what PostgreSQL gives back however it was
    written). Ids made by ``new_record_id`` already are (checked cheaply: this runs for every
    record of every claim). An id that is no UUID is left for PostgreSQL to refuse (a DataError
    sets its target aside)."""
    if isinstance(record_id, uuid.UUID):
        return str(record_id).encode()
    if (
        len(record_id) == 36
        and record_id[8] == record_id[13] == record_id[18] == record_id[23] == "-"
        and (record_id.islower() or record_id.replace("-", "").isdigit())
    ):
        return record_id.encode()
    try:
        return str(uuid.UUID(record_id)).encode()
    except ValueError:
        return record_id.encode()


def cipher_of(session: Session) -> PayloadCipher:
    """The cipher of the process, carried by every session ``Runtime`` makes."""
    cipher = session.info.get(SESSION_KEY)
    if not isinstance(cipher, PayloadCipher):
        raise ConfigError("this session carries no payload cipher: make sessions with Runtime")
    return cipher


def cipher_for(settings: Settings, remote: Sequence[str] = ()) -> PayloadCipher:
    """The cipher of APPENDQ_DATA_KEYS, or of the development key (made once under the state
    dir) while every LiveVox is local. ``remote`` names the accounts whose LiveVox is not local:
    with any, APPENDQ_DATA_KEYS is required (``ConfigError``): a key kept beside the data
    protects nothing, and workers on other machines would each make their own and could not
    read each other's batches."""
    if settings.data_keys:
        return PayloadCipher([decode_key(k.get_secret_value()) for k in settings.data_keys])
    if remote:
        raise ConfigError(
            f"APPENDQ_DATA_KEYS is not set while LiveVox is not local (account "
            f"{', '.join(remote)}): set it on every appendq process (see the README, Personal "
            "data); the development key is for the simulator only"
        )
    return PayloadCipher([development_key(Path(settings.state_dir) / DEV_KEY_FILE)])


def development_key(path: Path) -> bytes:
    """The key in ``path``, made there first if there is none (0600; safe when processes race:
    the first one linked in place wins, the others read it)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (new_key() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        log.info("made a development data key in %s", path)
    try:
        return decode_key(path.read_text())
    except ValueError:
        raise ConfigError(
            f"{path} holds no data key: restore it, or set APPENDQ_DATA_KEYS"
        ) from None
