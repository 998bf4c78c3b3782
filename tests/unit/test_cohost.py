"""Co-hosting's option parsing, per-service settings and refusals (shared.cohost,
shared.launcher): no broker is connected here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.metering.settings import MeteringSettings
from services.promptconfig.settings import PromptConfigSettings
from shared import cohost
from shared.embedded_auth import EmbeddedAuth
from shared.launcher import CRITICAL_PATH, SERVICES, Platform, parse_cohost
from shared.metrics import ServiceMetrics

pytestmark = pytest.mark.unit


def test_the_launcher_option_names_groups_in_start_order() -> None:
    assert parse_cohost("") == parse_cohost("none") == parse_cohost(" None ") == ()
    assert parse_cohost("all") == (SERVICES,)
    (critical,) = parse_cohost("critical")
    assert set(critical) == set(CRITICAL_PATH)
    assert critical == tuple(n for n in SERVICES if n in CRITICAL_PATH)  # start order
    assert parse_cohost("llm,gateway;audit,access") == (("llm", "gateway"), ("access", "audit"))
    assert parse_cohost("critical;audit,finetune") == (critical, ("audit", "finetune"))
    # A group of one is that service alone.
    assert parse_cohost("gateway;audit,access") == (("access", "audit"),)
    # Within a smaller platform, `critical` is the part of it that is there.
    assert parse_cohost("critical", ("promptconfig", "gateway", "audit")) == (
        ("promptconfig", "gateway"),
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("gateway,gatewy", "no service gatewy"),
        ("gateway,llm;llm,audit", "llm named more than once"),
        ("critical,gateway", "gateway named more than once"),
        ("gateway,llm;;audit", "an empty group"),
    ],
)
def test_the_launcher_option_refuses_what_it_cannot_run(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cohost(value)


def test_the_runner_names_services_in_start_order_and_refuses_unknown_ones() -> None:
    assert cohost.parse_names("all") == SERVICES
    assert cohost.parse_names("gateway, promptconfig") == ("promptconfig", "gateway")
    with pytest.raises(cohost.CohostError, match="no service nope"):
        cohost.parse_names("gateway,nope")
    with pytest.raises(cohost.CohostError, match="gateway named more than once"):
        cohost.parse_names("gateway,gateway")
    with pytest.raises(cohost.CohostError, match="name the services"):
        cohost.parse_names(" , ")


def test_co_hosted_services_cannot_be_copied(tmp_path: Path) -> None:
    platform = Platform(tmp_path, cohost=parse_cohost("critical"), replicas={"gateway": 2})
    with pytest.raises(ValueError, match="co-hosted services run one copy: gateway"):
        platform.start()
    stray = Platform(tmp_path, services=("promptconfig", "gateway"), cohost=(("gateway", "llm"),))
    with pytest.raises(ValueError, match="do not fit"):
        stray.start()
    assert not (tmp_path / "logs").exists()  # refused before anything started


def test_the_launcher_scopes_each_member_s_credentials_to_it(tmp_path: Path) -> None:
    platform = Platform(tmp_path, cohost=parse_cohost("access,gateway"))
    platform._auth = EmbeddedAuth(
        tmp_path / "nats", {"svc-access": "pw-access", "svc-gateway": "pw-gateway"}
    )
    assert platform._service_env("gateway", ("access", "gateway")) == {
        "TENANTRY_GATEWAY__NATS_USER": "svc-gateway",
        "TENANTRY_GATEWAY__NATS_PASSWORD": "pw-gateway",
    }
    assert platform._service_env("access", ("access", "gateway"))[
        "TENANTRY_ACCESS__NATS_AUTH_DIR"
    ] == str(tmp_path / "nats")
    # Alone, a service gets its variables plain, as before.
    assert platform._service_env("gateway")["TENANTRY_NATS_USER"] == "svc-gateway"


ENVIRON = {
    "TENANTRY_NATS_URL": "nats://127.0.0.1:4999",
    "TENANTRY_LOG_LEVEL": "WARNING",
    "TENANTRY_PROMPTCONFIG__NATS_USER": "svc-promptconfig",
    "TENANTRY_PROMPTCONFIG__NATS_PASSWORD": "Pc-0123456789",
    "TENANTRY_METERING__NATS_USER": "svc-metering",
    "TENANTRY_METERING__NATS_PASSWORD": "Me-0123456789",
    "TENANTRY_METERING__LOG_LEVEL": "DEBUG",
}


def test_each_service_reads_the_process_environment_with_its_own_on_top() -> None:
    env = cohost.service_environ("metering", ENVIRON)
    assert env == {
        "TENANTRY_NATS_URL": "nats://127.0.0.1:4999",
        "TENANTRY_LOG_LEVEL": "DEBUG",
        "TENANTRY_NATS_USER": "svc-metering",
        "TENANTRY_NATS_PASSWORD": "Me-0123456789",
    }
    assert "Pc-0123456789" not in env.values()  # never another service's password
    assert cohost.scoped("llm", "TENANTRY_NATS_PASSWORD_FILE") == (
        "TENANTRY_LLM__NATS_PASSWORD_FILE"
    )


def test_built_services_have_their_own_settings_and_the_environment_is_untouched() -> None:
    before = dict(os.environ)
    promptconfig, metering = cohost.build(("promptconfig", "metering"), ENVIRON)
    assert os.environ == before
    assert isinstance(promptconfig.settings, PromptConfigSettings)
    assert isinstance(metering.settings, MeteringSettings)
    assert promptconfig.settings.nats_user == "svc-promptconfig"
    assert metering.settings.nats_user == "svc-metering"
    assert metering.settings.nats_password is not None
    assert metering.settings.nats_password.get_secret_value() == "Me-0123456789"
    assert (promptconfig.settings.log_level, metering.settings.log_level) == ("WARNING", "DEBUG")
    assert promptconfig.broker is not metering.broker

    environ = dict(ENVIRON)
    cohost.forget_scoped(environ)
    assert environ == {
        "TENANTRY_NATS_URL": "nats://127.0.0.1:4999",
        "TENANTRY_LOG_LEVEL": "WARNING",
    }


def test_a_process_wide_nats_user_is_refused_for_several_services() -> None:
    shared = {**ENVIRON, "TENANTRY_NATS_USER": "svc-gateway", "TENANTRY_NATS_PASSWORD": "x"}
    with pytest.raises(cohost.CohostError, match="would share one NATS user"):
        cohost.build(("promptconfig", "metering"), shared)
    # One service alone may read it, as `python -m services.<name>` does.
    (alone,) = cohost.build(("promptconfig",), {"TENANTRY_NATS_USER": "svc-promptconfig"})
    assert alone.settings.nats_user == "svc-promptconfig"


def test_a_bad_setting_names_its_service_and_never_the_secret() -> None:
    bad = {
        **ENVIRON,
        "TENANTRY_METERING__ENVIRONMENT": "production",
        "TENANTRY_METERING__NATS_PASSWORD": "changeme",
    }
    with pytest.raises(cohost.CohostError) as refused:
        cohost.build(("promptconfig", "metering"), bad)
    assert str(refused.value).startswith("metering: ")
    assert "placeholder" in str(refused.value) and "changeme" not in str(refused.value)

    ports = {**ENVIRON, "TENANTRY_HTTP_PORT": "8080", "TENANTRY_METERING__HTTP_PORT": "8081"}
    with pytest.raises(cohost.CohostError, match="one health/metrics endpoint per process"):
        cohost.build(("promptconfig", "metering"), ports)


def test_one_metrics_exposition_holds_every_service_once_per_family() -> None:
    first, second = ServiceMetrics("gateway"), ServiceMetrics("llm")
    first.observe("svc.gateway.health", 0.001, True)
    second.observe("svc.llm.invoke.acme", 0.2, True)
    second.observe("svc.llm.invoke.acme", 0.3, False)
    body, _ = cohost.merged_exposition([first.registry, second.registry])()
    text = body.decode()
    assert text.count("# TYPE tenantry_handler_seconds histogram") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    counts = {
        (s.labels["service"], s.labels["outcome"]): s.value
        for s in families["tenantry_handler_seconds"].samples
        if s.name.endswith("_count")
    }
    assert counts == {("gateway", "ok"): 1.0, ("llm", "ok"): 1.0, ("llm", "error"): 1.0}
    tenants = families["tenantry_tenant_messages"].samples
    assert {s.labels["service"] for s in tenants if s.name.endswith("_total")} == {"llm"}
