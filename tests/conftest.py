from __future__ import annotations

import os
from contextlib import ExitStack

import pytest

from shared.settings import DatabaseSettings, NotifySettings, Settings
from tests.infra import (
    create_database,
    delete_namespace,
    drop_database,
    find_infra,
    run,
    unique_suffix,
    with_database,
)


@pytest.fixture(scope="session")
def infra():
    with ExitStack() as stack:
        found = find_infra(stack)
        if isinstance(found, str):
            if os.environ.get("SP4N_REQUIRE_INFRA") == "1":  # CI: skipping would test nothing
                pytest.fail(found)
            pytest.skip(found)
        yield found


@pytest.fixture(scope="session")
def settings(infra) -> Settings:
    """Settings for this test run: a fresh database and a unique broker namespace."""
    suffix = unique_suffix()
    database = f"sp4n_test_{suffix}"
    namespace = f"sp4ntest-{suffix}"
    run(create_database(infra.postgres_admin_url, database))
    try:
        yield Settings(
            database_url=with_database(infra.postgres_admin_url, database),
            amqp_url=infra.amqp_url,
            namespace=namespace,
            db_pool_min=1,
            db_pool_max=5,
            outbox_poll_interval_s=0.2,
            # A killed service's leased outbox rows are republished after this (e2e crashes).
            outbox_lease_s=5.0,
            notify_backoff_base_s=0.2,
            notify_poll_interval_s=0.1,
            # The tests' webhook receivers listen on loopback, which notify refuses unless
            # the allow-list names it (services/notify/targets.py).
            notify=NotifySettings(allowed_targets=["127.0.0.1/32", "::1/128"]),
            # The shared test machine runs many suites at once: a pool connection can take
            # longer than production's acquire timeout to come free there, which would answer
            # 503 to a test's request that is merely queued (outages are tested with a cut proxy).
            db=DatabaseSettings(acquire_timeout_s=30.0),
        )
    finally:
        run(delete_namespace(infra.amqp_url, namespace))
        run(drop_database(infra.postgres_admin_url, database))
