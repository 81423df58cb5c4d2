"""The producer side of appendq: validate records, give them stable ids, queue them in Redis.
``connect(settings)`` gives a ``Producer`` (a context manager that closes its Redis connections);
``Producer.enqueue(target, records)`` queues one submission, ``Producer.enqueue_stream(target,
read_records(path))`` a file of any size. Both return a ``Receipt``.

Refusals of a whole submission are typed (``appendq.errors``): ``InvalidValue`` (a target whose id
is out of range; ``.field`` names service/campaign), ``TooManyTargets`` (a new target past
APPENDQ_MAX_TARGETS) and ``PhoneBudgetExceeded`` (past APPENDQ_INTAKE_MAX_PHONES).
"""

from __future__ import annotations

from producer.api import DEFAULT_CHUNK, Producer, StreamItem, connect
from producer.door import check_phone_budget, parse_target
from producer.files import FILE_LEVEL, format_for, iter_records, read_records
from producer.receipt import EnqueueInterrupted, Receipt

__all__ = [
    "DEFAULT_CHUNK",
    "FILE_LEVEL",
    "EnqueueInterrupted",
    "Producer",
    "Receipt",
    "StreamItem",
    "check_phone_budget",
    "connect",
    "format_for",
    "iter_records",
    "parse_target",
    "read_records",
]
