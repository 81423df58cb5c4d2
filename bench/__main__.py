"""``make bench``: the drain cycle against the machine's floor, bulk enqueue against a naive
Celery task per record, and the HTTP intake against the Python producer, each measured side by
side in the same run. Prints a table. Longer benchmarks run on their own:
``python -m bench.backlog`` (1,000,000 records), ``python -m bench.audit_scale`` (10M rows;
``--rows 100000000`` for the issue-14 figures),
``python -m bench.accounts`` (20 LiveVox accounts on 1, 2 and 4 workers; accounts per core),
``python -m bench.console`` (the console's pages over HTTP with 1,000,000 record rows)."""

from __future__ import annotations

import argparse

from bench.drain_cycle import bench_drain_cycle
from bench.enqueue import bench_enqueue
from bench.intake import bench_intake, bench_workers_and_largest


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--records", type=int, default=100_000, help="records for the bulk-enqueue benchmark"
    )
    args = parser.parse_args()
    print(f"{'measure':<46} {'appendq':>16} {'baseline':>16} {'ratio':>9}")
    bench_drain_cycle(repeat=args.repeat)
    bench_enqueue(records=args.records)
    bench_intake(records=args.records)
    bench_workers_and_largest(records=args.records)


if __name__ == "__main__":
    main()
