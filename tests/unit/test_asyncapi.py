"""The AsyncAPI document lists every subject the services use, each with its real
payload schema."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from shared import asyncapi, subjects
from shared.launcher import SERVICES

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # Bootstrapping services reads settings; keep their (unopened) state out of the repo.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TENANTRY_DATA_DIR", str(tmp_path_factory.mktemp("asyncapi")))
        return asyncapi.document()


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` one token, `>` one or more trailing tokens."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def patterns(doc: dict[str, Any]) -> list[str]:
    found = []
    for channel in doc["channels"].values():
        pattern = channel["address"]
        for name in channel.get("parameters", {}):
            pattern = pattern.replace("{" + name + "}", ">" if name != "tenant_id" else "*")
        found.append(pattern)
    return found


def test_every_subscribed_subject_of_every_service_is_a_channel(
    doc: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path))
    listed = patterns(doc)
    subscribed = asyncapi.subscribed(SERVICES)
    assert len(subscribed) > 40  # the discovery found the services' handlers at all
    for subject in subscribed:
        assert subject in listed, subject
    missing = asyncapi.undocumented(doc)
    assert not missing, f"add these to shared.asyncapi.CATALOGUE (with their models): {missing}"
    for name in SERVICES:
        assert subjects.health(name) in listed


# Builders that return a prefix or parse a subject, not a subject something is sent on.
NOT_SUBJECTS = {
    "token",
    "tenant_from_subject",
    "tenant_inbox_prefix",
    "tenant_reply_prefix",
    "service_inbox_prefix",
    "completions",  # a subscription wildcard over one tenant's completions
    "service_all",  # a subscription wildcard over one verb
}
SAMPLE = {
    "tenant_id": "acme",
    "raw_tenant_token": "acme",
    "request_id": "r-1",
    "kind": "audit",
    "stream": "TENANTRY_EVENTS",
    "consumer": "audit",
}


def test_every_subject_builder_lands_on_a_listed_channel(doc: dict[str, Any]) -> None:
    listed = patterns(doc)
    rpc = [
        tuple(c["address"].split(".")[1:3])
        for c in doc["channels"].values()
        if c["address"].startswith("svc.") and c["address"].endswith(".{tenant_id}")
    ]
    checked = 0
    for name, fn in inspect.getmembers(subjects, inspect.isfunction):
        if name.startswith("_") or name in NOT_SUBJECTS or fn.__module__ != subjects.__name__:
            continue
        params = list(inspect.signature(fn).parameters)
        if params == ["service_name", "verb", "tenant_id"]:
            built = [fn(s, v, "acme") for s, v in rpc]
        elif params == ["service_name"]:
            built = [fn(s) for s in SERVICES]
        else:
            unknown = set(params) - set(SAMPLE)
            assert not unknown, f"subjects.{name}{params}: classify it in this test"
            built = [fn(**{p: SAMPLE[p] for p in params})]
        for subject in built:
            assert any(matches(p, subject) for p in listed), (name, subject)
            checked += 1
    assert checked > 50


def test_payloads_are_the_models_json_schemas(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    messages = doc["components"]["messages"]
    search = doc["channels"]["svc-retrieval-search"]
    assert search["address"] == "svc.retrieval.search.{tenant_id}"
    assert set(search["messages"]) == {"SearchChunks", "ChunksFoundReply"}
    request = schemas["SearchChunks"]
    assert {"tenant_id", "event_id", "request_id", "query"} <= set(request["properties"])
    assert request["properties"]["tenant_id"].get("description")
    for name, message in messages.items():
        ref = message["payload"]["$ref"]
        assert ref == f"#/components/schemas/{name}" and name in schemas
    # Every $ref anywhere resolves inside the document.
    text = json.dumps(doc)
    for ref in set(part.split('"')[0] for part in text.split('"$ref": "#/')[1:]):
        node: Any = doc
        for key in ref.split("/"):
            node = node[key]
    completion = doc["channels"]["tenant-completion"]
    assert completion["address"] == "tenant.{tenant_id}.completion.{request_id}"


def test_every_operation_names_its_channel_and_messages(doc: dict[str, Any]) -> None:
    for op_id, operation in doc["operations"].items():
        assert operation["action"] in ("send", "receive"), op_id
        key = operation["channel"]["$ref"].split("/")[-1]
        assert key in doc["channels"], op_id
    assert doc["operations"]["llm.invoke"]["reply"]["messages"]


def test_the_command_writes_the_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path))
    out = tmp_path / "asyncapi.json"
    assert asyncapi.main([str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["asyncapi"] == "3.0.0" and len(written["channels"]) > 50


SPEC = Path(__file__).resolve().parents[1] / "data" / "asyncapi" / "asyncapi-3.0.0.schema.json"


def test_valid_by_the_asyncapi_3_schema(doc: dict[str, Any]) -> None:
    import jsonschema

    validator = jsonschema.Draft7Validator(json.loads(SPEC.read_text()))
    errors = [f"{list(e.path)}: {e.message[:200]}" for e in validator.iter_errors(doc)]
    assert not errors, "\n".join(errors[:10])
    # The check can fail: an operation with an unknown action, a channel with a typo.
    broken = json.loads(json.dumps(doc))
    broken["operations"]["llm.invoke"]["action"] = "call"
    broken["channels"]["svc-llm-invoke"]["adress"] = "x"
    assert len(list(validator.iter_errors(broken))) >= 2


# Subscribers whose messages are not Tenantry models: nats-server's own advisory JSON.
NOT_OURS = {subjects.MAX_DELIVERIES_ADVISORY}


def test_every_subscriber_declares_its_payload_and_the_document_carries_it(
    doc: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path))
    by_pattern = {patterns({"channels": {"c": c}})[0]: c for c in doc["channels"].values()}
    schemas = doc["components"]["schemas"]
    checked = 0
    for pattern, users in asyncapi.subscribed(SERVICES).items():
        if pattern in NOT_OURS:
            continue
        channel = by_pattern[pattern]
        assert "x-tenantry-payload" not in channel, f"{pattern}: documented as raw bytes"
        for service, subscriber in users:
            declared = asyncapi.declared_models(subscriber)
            assert declared, f"{service} {pattern}: no payload declared (declare_payload)"
            for model in declared:
                in_channel = {n.removesuffix("Reply") for n in channel["messages"]}
                assert model.__name__ in in_channel, (pattern, model.__name__, in_channel)
                assert schemas[model.__name__]["properties"], model.__name__
            checked += 1
    assert checked > 40


def test_faststreams_own_schema_shows_every_payload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastStream's generated AsyncAPI (what `faststream docs` and AsgiFastStream serve)
    reads each handler's signature: declare_payload annotates it with the model, though
    the handler still takes the raw message."""
    import importlib

    from faststream.specification import AsyncAPI

    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path))
    checked = 0
    for name in SERVICES:
        app = importlib.import_module(f"services.{name}.app")
        service = app.make_service() if hasattr(app, "make_service") else app.bootstrap()
        spec = json.loads(
            AsyncAPI(service.broker, schema_version="3.0.0").to_specification().to_json()
        )
        schemas = spec["components"].get("schemas", {})
        for key, message in spec["components"]["messages"].items():
            if any(key.startswith(p) for p in NOT_OURS):
                continue
            ref = message["payload"].get("$ref", "")
            model = ref.rsplit("/", 1)[-1]
            assert model != "EmptyPayload" and schemas[model].get("properties"), (name, key)
            checked += 1
    assert checked > 40
