"""Ctrl-C during ``appendq enqueue`` (issue 7, defect 6): a real process, sent a real SIGINT half
way through a file it reads from a pipe, still says every row it refused and where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from appendq.keys import Keys
from tests.conftest import REDIS_URL, phone
from tests.support.procs import APPENDQ, ROOT, RedisServer, env_for, wait_until

pytestmark = pytest.mark.slow

TARGET = "service:1001"


def start(keys: Keys, *extra: str, url: str = REDIS_URL) -> subprocess.Popen[bytes]:
    """``appendq enqueue -`` reading CSV from a pipe, in chunks of 2 records."""
    env = env_for({"APPENDQ_REDIS_URL": url, "APPENDQ_REDIS_PREFIX": keys.prefix})
    command = [*APPENDQ, "enqueue", "-", "--format", "csv", "--service", "1001", "--chunk", "2"]
    return subprocess.Popen(
        [*command, *extra],
        env=env,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def row(line: int) -> bytes:
    """The row on ``line``: a good lead, except every 5th line, whose phone is not a number."""
    number = "12345" if line % 5 == 0 else phone(line)
    return f"{number},L{line}\n".encode()


def test_ctrl_c_while_waiting_for_the_file_reports_every_refused_row(
    keys: Keys, redis_client: redis.Redis
) -> None:
    # Given `appendq enqueue - --json` has read lines 2-21 of a pipe (16 good rows, 4 bad, all
    # pushed) and waits for more / When it gets SIGINT, the pipe still open / Then it stops at
    # once: exit 130, one complete JSON document listing the 4 refused rows, last row 21, and
    # exactly the 16 good rows queued
    process = start(keys, "--json")
    assert process.stdin is not None
    process.stdin.write(b"phone1,account\n" + b"".join(row(line) for line in range(2, 22)))
    process.stdin.flush()
    wait_until(lambda: redis_client.llen(keys.queue(TARGET)) == 16, 30, "16 rows queued")

    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 130, stderr.decode()
    document = json.loads(stdout)
    assert (document["accepted"], document["rejected"], document["last_row"]) == (16, 4, 21)
    assert (document["interrupted"], document["complete"]) == (True, False)
    assert [(e["row"], e["field"]) for e in document["errors"]] == [
        (line, "phone1") for line in (5, 10, 15, 20)
    ]
    assert redis_client.llen(keys.queue(TARGET)) == 16
    assert b"Traceback" not in stderr


def test_ctrl_c_in_a_busy_import_stops_between_rows(keys: Keys, redis_client: redis.Redis) -> None:
    # Given rows streaming in as fast as the importer takes them / When it gets SIGINT once
    # about 200 are queued / Then it exits 130 with a summary naming the line it stopped after,
    # the refused rows on stderr up to that line, and exactly the good rows up to it queued
    process = start(keys)
    assert process.stdin is not None
    feeding = threading.Thread(target=_feed, args=(process,), daemon=True)
    feeding.start()
    wait_until(lambda: redis_client.llen(keys.queue(TARGET)) >= 200, 60, "200 rows queued")

    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    feeding.join(timeout=10)

    assert process.returncode == 130, stderr.decode()
    last = int(stdout.decode().split("after the row at line ")[1])
    good = [line for line in range(2, last + 1) if line % 5]
    bad = [line for line in range(2, last + 1) if line % 5 == 0]
    refused = [line for line in stderr.decode().splitlines() if line.startswith("row ")]
    assert len(refused) == min(len(bad), 50)  # stderr shows 50 at most
    assert all(r.startswith(f"row {line}: phone1: ") for r, line in zip(refused, bad, strict=False))
    assert stdout.decode() == (
        f"accepted {len(good):,} records for {TARGET}; {len(bad)} rejected; "
        f"interrupted (Ctrl-C) after the row at line {last}\n"
    )
    assert "the rows after it were not read" in stderr.decode()
    assert redis_client.llen(keys.queue(TARGET)) == len(good)


def _feed(process: subprocess.Popen[bytes]) -> None:
    """Write rows to the importer until it stops reading."""
    assert process.stdin is not None
    try:
        process.stdin.write(b"phone1,account\n")
        for start in range(2, 1_000_000, 50):
            process.stdin.write(b"".join(row(line) for line in range(start, start + 50)))
            process.stdin.flush()
    except (BrokenPipeError, ValueError, OSError):
        return


def test_a_second_ctrl_c_stops_a_hung_push_at_once(keys: Keys, tmp_path: Path) -> None:
    # Given an import whose Redis froze (SIGSTOP) while it pushed rows 6-7, after rows 2-5 were
    # queued / When Ctrl-C is pressed once (it waits for the push) and then again / Then it exits
    # 130 at once with a JSON document saying it is incomplete and which rows may be queued
    server = RedisServer(tmp_path / "redis")
    server.start()
    assert server.proc is not None
    client = redis.Redis.from_url(server.url)
    process = start(keys, "--json", url=server.url)
    assert process.stdin is not None
    try:
        process.stdin.write(b"phone1,account\n" + b"".join(row(line) for line in (2, 3, 4, 6)))
        process.stdin.flush()
        wait_until(lambda: client.llen(keys.queue(TARGET)) == 4, 30, "rows 2-5 queued")
        os.kill(server.proc.pid, signal.SIGSTOP)
        process.stdin.write(row(7) + row(8))
        process.stdin.flush()
        time.sleep(1.0)  # the importer reads rows 6-7 and waits for the frozen Redis

        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert process.poll() is None, "one Ctrl-C waits for the push in progress"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        client.close()
        server.kill9()

    assert process.returncode == 130, stderr.decode()
    document = json.loads(stdout)
    assert (document["interrupted"], document["complete"]) == (True, False)
    assert "4 records queued for service:1001" in document["error"]
    assert "rows 6-7 may or may not be queued" in document["error"]
    assert (document["accepted"], document["errors"]) == (4, [])  # the receipt, not just a note
    assert b"Traceback" not in stderr
