"""``appendq enqueue``: the command's output, exit codes and what it leaves in a real Redis."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

import appendq.cli.enqueue  # noqa: F401  (registers the command)
from appendq.cli.app import main
from appendq.keys import Keys
from tests.conftest import REDIS_URL, phone, queued
from tests.test_files_rows import BAD_CSV, BAD_CSV_ERRORS

pytestmark = pytest.mark.usefixtures("keep_root_logging")


#: ``run(*args, stdin=b"...", url=..., **env)`` invokes ``appendq enqueue *args`` with a test
#: prefix (and any further ``APPENDQ_*`` variables).
Run = Callable[..., Result]


@pytest.fixture
def run(keys: Keys) -> Run:
    def invoke(
        *args: str, stdin: bytes | None = None, url: str = REDIS_URL, **extra: str
    ) -> Result:
        env = {"APPENDQ_REDIS_URL": url, "APPENDQ_REDIS_PREFIX": keys.prefix, **extra}
        return CliRunner(env=env).invoke(main, ["enqueue", *args], input=stdin)

    return invoke


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(("row ", "... and"))]


def test_bad_input_csv_lists_each_error_and_queues_the_good_rows(
    run: Run, tmp_path: Path, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given the acceptance criteria's bad CSV / When enqueued / Then one stderr line per bad row
    # naming row and field, the good rows queued, a summary on stdout and exit 0
    path = tmp_path / "bad.csv"
    path.write_bytes(BAD_CSV)

    result = run(str(path), "--service", "1001")

    assert result.exit_code == 0, result.output
    assert result.stdout == "accepted 2 records for service:1001; 6 rejected\n"
    assert error_lines(result) == [
        "row 3: phone1: is required",
        "row 4: phone2: 31 phone numbers, LiveVox takes at most 30 per record (phone1 included)",
        "row 5: phone1: contains letters: a dialer needs digits (write a vanity number such as "
        "1-800-FLOWERS as 1-800-356-9377)",
        "row 6: firstName: String should have at most 50 characters",
        "row 7: record: blank line",
        "row 8: firstName: is not valid UTF-8",
    ]
    assert [r.payload["account"] for r in queued(redis_client, keys, "service:1001")] == [
        "A1",
        "A9",
    ]
    assert "21255501O4" not in result.stderr


def test_json_output_is_one_object_matching_redis(
    run: Run, tmp_path: Path, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given the bad CSV / When enqueued with --json for a campaign / Then stdout is exactly one
    # JSON receipt whose ids are the records in Redis, in order, and it lists every error
    path = tmp_path / "bad.csv"
    path.write_bytes(BAD_CSV)

    result = run(str(path), "--campaign", "77", "--json")

    assert result.exit_code == 0, result.output
    receipt = json.loads(result.stdout)
    assert (receipt["target"], receipt["accepted"], receipt["rejected"]) == ("campaign:77", 2, 6)
    assert receipt["record_ids"] == [r.id for r in queued(redis_client, keys, "campaign:77")]
    assert [(e["row"], e["field"]) for e in receipt["errors"]] == BAD_CSV_ERRORS
    assert receipt["errors"][0] == {
        "index": 1,
        "row": 3,
        "field": "phone1",
        "message": "is required",
    }


def test_bad_input_jsonl_from_stdin(run: Run, redis_client: redis.Redis, keys: Keys) -> None:
    # Given JSON Lines on stdin with a bad JSON line and a non-UTF-8 byte / When enqueued with
    # FILE "-" / Then the good lines are queued and each bad one is reported with its row
    lines = (
        json.dumps({"phone1": phone(1), "account": "A1"}).encode()
        + b"\n{not json}\n"
        + b'{"phone1": "'
        + phone(2).encode()
        + b'", "lastName": "M\xfcller"}\n'
        + json.dumps({"phone1": phone(3), "account": "A3"}).encode()
        + b"\n"
    )
    result = run("-", "--service", "5", "--format", "jsonl", stdin=lines)

    assert result.exit_code == 0, result.output
    assert error_lines(result) == [
        "row 2: record: not valid JSON: Expecting property name enclosed in double quotes "
        "(column 2)",
        "row 3: lastName: is not valid UTF-8",
    ]
    assert [r.payload["account"] for r in queued(redis_client, keys, "service:5")] == ["A1", "A3"]


def test_25000_row_csv_is_queued_whole_and_in_order(
    run: Run, tmp_path: Path, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a 25,000-row CSV / When enqueued in chunks of 5,000 / Then all 25,000 are queued in
    # file order and the receipt's ids match Redis
    path = tmp_path / "big.csv"
    with path.open("w") as out:
        out.write("phone1,account\n")
        out.writelines(f"{phone(i)},{i}\n" for i in range(25_000))

    result = run(str(path), "--service", "1001", "--json")

    assert result.exit_code == 0, result.stderr
    receipt = json.loads(result.stdout)
    stored = queued(redis_client, keys, "service:1001")
    assert receipt["accepted"] == len(stored) == 25_000
    assert [r.payload["account"] for r in stored] == [str(i) for i in range(25_000)]
    assert receipt["record_ids"] == [r.id for r in stored]


def test_duplicates_are_counted_in_the_summary_and_listed_in_json(
    run: Run, tmp_path: Path, redis_client: redis.Redis, keys: Keys
) -> None:
    # Given a CSV whose row 4 repeats row 2's phone (written differently) and a bad row 5 / When
    # enqueued, then enqueued again with --json / Then the summary says 1 duplicate, and the second
    # run finds every good row a duplicate of the first run's records, listed with their rows
    path = tmp_path / "leads.csv"
    path.write_text(f"phone1,account\n{phone(0)},A0\n{phone(1)},A1\n+1 {phone(0)},A2\n123,A3\n")

    human = run(str(path), "--service", "1001")
    again = run(str(path), "--service", "1001", "--json")

    assert human.exit_code == 0, human.output
    assert human.stdout == "accepted 2 records for service:1001; 1 duplicate; 1 rejected\n"
    stored = queued(redis_client, keys, "service:1001")
    assert [(r.payload["account"], r.duplicate_of) for r in stored[:3]] == [
        ("A0", None),
        ("A1", None),
        ("A2", stored[0].id),
    ]
    assert again.exit_code == 0, again.output
    receipt = json.loads(again.stdout)
    assert (receipt["accepted"], receipt["duplicate"], receipt["rejected"]) == (0, 3, 1)
    assert receipt["record_ids"] == []
    assert [(d["row"], d["duplicate_of"]) for d in receipt["duplicates"]] == [
        (2, stored[0].id),
        (3, stored[1].id),
        (4, stored[0].id),
    ]
    assert [d["record_id"] for d in receipt["duplicates"]] == [r.id for r in stored[3:]]


def test_dedupe_off_lets_copies_through(run: Run, tmp_path: Path) -> None:
    # Given APPENDQ_DEDUPE=off / When a file with the same phone twice is enqueued / Then both
    # are accepted and the summary has no duplicate part
    path = tmp_path / "leads.csv"
    path.write_text(f"phone1\n{phone(0)}\n{phone(0)}\n")

    result = run(str(path), "--service", "1", APPENDQ_DEDUPE="off")

    assert (result.exit_code, result.stdout) == (
        0,
        "accepted 2 records for service:1; 0 rejected\n",
    )


def test_printed_errors_are_capped_but_json_has_all(run: Run, tmp_path: Path) -> None:
    # Given 60 bad rows / When enqueued / Then stderr shows 50 and a "... and 10 more" line,
    # exit 1 as every record was refused, and --json still lists all 60
    path = tmp_path / "bad.csv"
    path.write_text("phone1\n" + "123\n" * 60)

    human = run(str(path), "--service", "1")
    as_json = run(str(path), "--service", "1", "--json")

    assert human.exit_code == as_json.exit_code == 1
    assert human.stdout == "accepted 0 records for service:1; 60 rejected\n"
    assert len(error_lines(human)) == 51
    assert error_lines(human)[-1] == "... and 10 more (--json lists them all)"
    assert len(json.loads(as_json.stdout)["errors"]) == 60


def test_unknown_column_is_reported_once(run: Run, tmp_path: Path) -> None:
    # Given 3 rows under an unknown column / When enqueued / Then one line about the column,
    # and the rows go in without it
    path = tmp_path / "leads.csv"
    path.write_text("phone1,shoeSize\n" + "".join(f"{phone(i)},9\n" for i in range(3)))

    result = run(str(path), "--service", "1")

    assert result.exit_code == 0
    assert error_lines(result) == [
        "row 1: shoeSize: is not a LiveVox record field; the column is ignored"
    ]
    assert result.stdout == "accepted 3 records for service:1; 0 rejected\n"


def test_empty_file_succeeds(run: Run, tmp_path: Path) -> None:
    # Given an empty CSV / When enqueued / Then nothing is queued and the exit code is 0
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")

    result = run(str(path), "--service", "1")

    assert (result.exit_code, result.stdout) == (
        0,
        "accepted 0 records for service:1; 0 rejected\n",
    )


def test_no_progress_bar_without_a_terminal(run: Run, tmp_path: Path) -> None:
    # Given stderr is not a terminal / When a good file is enqueued / Then stderr has no bar
    path = tmp_path / "leads.csv"
    path.write_text(f"phone1\n{phone(0)}\n")

    result = run(str(path), "--service", "1")

    assert result.exit_code == 0
    assert "enqueue" not in result.stderr and "%" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv", "--service", "1"], "does not exist"),
        (["{file}"], "exactly one of --service ID or --campaign ID"),
        (["{file}", "--service", "1", "--campaign", "2"], "exactly one of"),
        (["{txt}", "--service", "1"], "must end in .csv, .jsonl or .ndjson"),
        (["-", "--service", "1"], "needs a format"),
        (["{file}", "--service", "0"], "--service"),
    ],
)
def test_usage_errors_exit_2(run: Run, tmp_path: Path, args: list[str], message: str) -> None:
    # Given a usage mistake / When the command runs / Then exit code 2 and a message saying why
    (tmp_path / "leads.csv").write_text(f"phone1\n{phone(0)}\n")
    (tmp_path / "leads.txt").write_text("x\n")
    paths = {"file": str(tmp_path / "leads.csv"), "txt": str(tmp_path / "leads.txt")}

    result = run(*(a.format(**paths) for a in args))

    assert result.exit_code == 2
    assert message in result.stderr


def test_unreachable_redis_exits_3_and_says_what_may_be_queued(run: Run, tmp_path: Path) -> None:
    # Given Redis cannot be reached / When a file is enqueued / Then exit 3 and a message saying
    # which rows may or may not be queued
    path = tmp_path / "leads.csv"
    path.write_text(f"phone1\n{phone(0)}\n{phone(1)}\n")

    result = run(str(path), "--service", "1", url="redis://127.0.0.1:1/0")
    as_json = run(str(path), "--service", "1", "--json", url="redis://127.0.0.1:1/0")

    assert result.exit_code == as_json.exit_code == 3
    assert "0 records queued for service:1" in result.stderr
    assert "rows 2-3 may or may not be queued" in result.stderr
    receipt = json.loads(as_json.stdout)
    assert (receipt["accepted"], receipt["record_ids"]) == (0, [])
    assert "rows 2-3 may or may not be queued" in receipt["error"]


def test_json_says_how_far_the_import_went(run: Run, tmp_path: Path) -> None:
    # Given a file read to its end and one whose quoting breaks at row 3 / When enqueued with
    # --json (and the second also without) / Then the first is complete through row 3 (exit 0);
    # the second is not, exits 4, and its summary says where reading stopped
    good = tmp_path / "good.csv"
    good.write_text(f"phone1\n{phone(0)}\n{phone(1)}\n")
    broken = tmp_path / "broken.csv"
    broken.write_text(f'phone1,firstName\n{phone(2)},Al\n{phone(3)},"Bo"x\n{phone(4)},Cy\n')

    done = run(str(good), "--service", "1", "--json")
    stopped = run(str(broken), "--service", "1", "--json")
    human = run(str(broken), "--service", "2")

    assert done.exit_code == 0
    ending = {k: json.loads(done.stdout)[k] for k in ("complete", "interrupted", "last_row")}
    assert ending == {"complete": True, "interrupted": False, "last_row": 3}
    assert stopped.exit_code == 4
    document = json.loads(stopped.stdout)
    assert (document["complete"], document["accepted"], document["rejected"]) == (False, 1, 1)
    assert "row 3: file: reading stopped at line 3" in stopped.stderr
    assert (human.exit_code, human.stdout) == (
        4,
        "accepted 1 record for service:2; 1 rejected; reading stopped at line 3\n",
    )
