"""One fault scenario run with real ``appendq`` processes (``tests.test_crash``,
``tests.test_infra_faults``): the test's own PostgreSQL database and Redis prefix, the in-thread
simulator, a ``Cluster`` logging under the test's directory, and the invariants of
``tests.support.invariants`` checked against those stores at the end."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from appendq.settings import Settings
from tests.conftest import Sim, make_settings
from tests.support.cluster import Cluster, scenario_env
from tests.support.invariants import Summary, all_final, check, wait_for


class Scene:
    """One scenario's processes, stores and simulator."""

    def __init__(self, sim: Sim, database_url: str, prefix: str, tmp: Path) -> None:
        self.sim = sim
        self.database_url = database_url
        self.prefix = prefix
        self.tmp = tmp
        (tmp / "logs").mkdir()
        self.cluster = Cluster(
            tmp / "logs",
            scenario_env(
                database_url=database_url, prefix=prefix, sim_url=sim.url, state_dir=tmp / "st"
            ),
        )

    def settings_with(self, **overrides: Any) -> Settings:
        """Settings for the test process itself (e.g. its Producer) on the scenario's stores."""
        return make_settings(
            database_url=self.database_url,
            redis_prefix=self.prefix,
            livevox_base_url=self.sim.url,
            **overrides,
        )

    def appended(self, ids: list[str], timeout: float) -> None:
        """Wait until every one of ``ids`` is appended (with the process logs if it times out)."""
        wait_for(
            lambda: all_final(self.database_url, ids, {"appended"}),
            timeout,
            f"{len(ids)} records appended",
            self.cluster,
        )

    def check(self, ids: list[str], **kwargs: Any) -> Summary:
        """``tests.support.invariants.check`` on the scenario's stores, ``ids`` accepted."""
        return check(
            database_url=self.database_url,
            sim_url=self.sim.url,
            accepted=ids,
            prefix=self.prefix,
            **kwargs,
        )


S = TypeVar("S", bound=Scene)


@contextmanager
def staged(kind: type[S], sim: Sim, database_url: str, prefix: str, tmp: Path) -> Iterator[S]:
    """A scene of class ``kind`` on a simulator reset to a 3 s rate window (like the processes'
    settings); whatever it started is killed afterwards, even when the test fails."""
    sim.reset(rate_window_s=3.0)
    scene = kind(sim, database_url, prefix, tmp)
    try:
        yield scene
    finally:
        scene.cluster.close()
