"""The privilege model as data: who publishes what, and what production refuses."""

from __future__ import annotations

import re

from shared.events import EVENT_MODELS
from shared.privileges import PUBLISHES, migrate_grant, portal_grant, service_grant
from shared.production import insecure_settings
from shared.settings import IntakeSettings, Settings


def test_every_event_has_a_publisher_and_topic_permissions_match_exactly_those():
    published = {name for names in PUBLISHES.values() for name in names}
    assert published == set(EVENT_MODELS)
    for service, names in PUBLISHES.items():
        topic = re.compile(service_grant("sp4n", "sp4n", service).topic_write)
        for name in EVENT_MODELS:
            assert bool(topic.search(name)) == (name in names), (service, name)


def test_a_service_may_touch_only_its_own_queues_and_the_shared_exchanges():
    g = service_grant("sp4n", "sp4n", "routing")
    assert re.search(g.read, "sp4n.routing.submitted.v1")
    assert re.search(g.configure, "sp4n.routing.retry.v1.dlq")
    for other in ("sp4n.sla.complaints.v1", "sp4n.routingx.q", "sp4n.inbound", "amq.default"):
        assert not re.search(g.read, other) and not re.search(g.write, other)
    assert re.search(g.write, "sp4n.events") and re.search(g.write, "sp4n.retry")
    assert not re.search(g.configure, "sp4n.events")
    assert re.search(service_grant("sp4n", "sp4n", "intake").read, "sp4n.inbound")
    portal = portal_grant("sp4n", "sp4n", "wa-bot")
    assert portal.user == "sp4n-portal-wa-bot" and re.search(portal.write, "sp4n.inbound")
    assert not re.search(portal.write, "sp4n.events") and portal.topic_write == "^$"
    assert migrate_grant("sp4n", "sp4n").topic_write == "^$"


def test_development_defaults_are_fine_but_refused_in_production_naming_each_setting():
    dev = Settings()
    assert dev.migrates_at_startup and dev.trusts_body_source
    prod = Settings(env="production")
    assert not prod.migrates_at_startup and not prod.trusts_body_source
    problems = " ".join(insecure_settings(prod, "intake"))
    for var in ("SP4N_INTAKE__REPORTER_REF_KEY", "SP4N_INTAKE__WEB_SESSION_SECRET",
                "SP4N_INTAKE__MASTER_KEY", "SP4N_DATABASE_URL", "SP4N_AMQP_URL"):
        assert var in problems
    assert "dev-only" not in problems  # the values are never printed
    assert "SP4N_INTAKE__" not in " ".join(insecure_settings(prod, "routing"))
    good = Settings(env="production", database_url="postgresql://sp4n_sla:Xy7-long@db/sp4n",
                    amqp_url="amqp://sp4n-sla:Zq9-long@mq/")
    assert insecure_settings(good, "sla") == []
    intake = good.model_copy(update={"intake": IntakeSettings(
        reporter_ref_key="k" * 40, web_session_secret="s" * 40,
        master_key="bWFzdGVyLWtleS1mb3ItdGhlLXRlc3Qtb25seS0zMmI=", inbound_body_source=True)})
    assert ["SP4N_INTAKE__INBOUND_BODY_SOURCE" in p for p in insecure_settings(intake, "intake")] == [True]


def test_the_old_reporter_ref_key_variable_still_sets_intakes_key(monkeypatch):
    monkeypatch.setenv("SP4N_REPORTER_REF_KEY", "old-style")
    s = Settings()
    assert s.intake.reporter_ref_key == "old-style"
    assert "reporter_ref_key" not in s.model_dump()  # not passed on to other services


def test_bootstrap_refuses_a_bad_prefix_or_portal_before_touching_anything(monkeypatch, capsys):
    from services.cli import main

    monkeypatch.setenv("SP4N_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("SP4N_AMQP_URL", "amqp://nobody:x@127.0.0.1:1/")
    assert main(["bootstrap", "--portal", "Bad Name"]) == 2
    assert "--portal 'Bad Name'" in capsys.readouterr().err
    assert main(["bootstrap", "--prefix", "Robert'); DROP"]) == 2
    assert "prefix" in capsys.readouterr().err
