"""``python -m bench.phones``: one phone number's validation, the full parse
(``appendq.leads.normalise_phone``: phonenumbers.parse + is_valid_number) against the fast path
(``appendq.phones.normalise_phone_fast``), in microseconds a number, on a realistic mix: 95 % valid
US 10-digit numbers written in the ways CRMs and people write them, 5 % others (E.164 of other
countries, Canada, toll-free, invalid numbers, extensions, vanity letters, Unicode digits).

The numbers are made before the clock starts; each side runs the same list ``--repeat`` times and
the median is shown. Both sides answer the same (tests/test_phone_fastpath.py proves it)."""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from appendq.leads import normalise_phone
from appendq.phones import UNDECIDED, fast_normalise, normalise_phone_fast
from bench.common import row

US_FORMATS = (
    "{a}{e}{n}",
    "({a}) {e}-{n}",
    "{a}-{e}-{n}",
    "{a}.{e}.{n}",
    "+1 {a} {e} {n}",
    "1{a}{e}{n}",
    "+1{a}{e}{n}",
    "1-{a}-{e}-{n}",
)
OTHERS = (
    "+44 20 7946 0018",
    "+447911123456",
    "+33 1 42 68 53 00",
    "+49 30 901820",
    "+61 2 9374 4000",
    "+52 55 1234 5678",
    "4165550199",
    "(604) 555-0142",
    "1-800-555-0199",
    "+1 787 555 0100",
    "2120550101",
    "555-0101",
    "212-555-0101 x12",
    "1-800-FLOWERS",
    "\uff12\uff11\uff12\uff15\uff15\uff15\uff10\uff11\uff10\uff11",
    "+999 123 4567",
)


def _valid_us(rng: random.Random) -> str:
    """A valid US 10-digit number (drawn until phonenumbers agrees), in one of the formats."""
    while True:
        digits = f"{rng.randint(201, 989)}{rng.randint(200, 999)}{rng.randrange(10_000):04d}"
        try:
            normalise_phone(digits, "US")
        except ValueError:
            continue
        shape = rng.choice(US_FORMATS)
        return shape.format(a=digits[:3], e=digits[3:6], n=digits[6:])


def mix(count: int, seed: int = 14) -> list[str]:
    rng = random.Random(seed)
    return [_valid_us(rng) if rng.random() < 0.95 else rng.choice(OTHERS) for _ in range(count)]


def per_number_us(fn: Callable[[object, str], str], numbers: list[str], repeat: int) -> float:
    """Median over ``repeat`` runs of the list, in microseconds a number."""
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for number in numbers:
            try:  # noqa: SIM105 (suppress() would add ~0.3 us to each call timed)
                fn(number, "US")
            except ValueError:
                pass
        runs.append((time.perf_counter() - t0) / len(numbers) * 1e6)
    return statistics.median(runs)


def bench_phones(count: int, repeat: int) -> None:
    numbers = mix(count)
    others = [n for n in numbers if n in OTHERS]
    us = [n for n in numbers if n not in OTHERS]
    for fn in (normalise_phone_fast, normalise_phone):  # load and compile metadata: not timed
        per_number_us(fn, numbers[:2000] + list(OTHERS), 1)
    decided = sum(fast_normalise(n.strip(), "US") is not UNDECIDED for n in numbers)
    for name, sample in (
        ("phone validation, 95/5 mix (us/number)", numbers),
        ("  valid US 10-digit, 8 formats (us/number)", us),
        ("  the 5 % others (us/number)", others),
    ):
        fast = per_number_us(normalise_phone_fast, sample, repeat)
        full = per_number_us(normalise_phone, sample, repeat)
        row(name, f"{fast:.2f}", f"{full:.2f}", f"{full / fast:.1f}x")
    row("  decided by the fast path (share of the mix)", f"{decided / len(numbers):.1%}", "", "")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.phones")
    parser.add_argument("--numbers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'measure':<46} {'fast path':>16} {'full parse':>16} {'ratio':>9}")
    bench_phones(args.numbers, args.repeat)


if __name__ == "__main__":
    main()
