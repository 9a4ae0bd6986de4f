"""The AsyncAPI 3.0 document of a service, generated from the event catalog and the topology."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.events import CATALOG
from shared.topology import EVENTS_EXCHANGE, ConsumerQueue


def asyncapi_document(
    title: str, *, publishes: Sequence[str], consumes: Sequence[ConsumerQueue]
) -> dict[str, Any]:
    received = sorted({key for queue in consumes for key in queue.routing_keys})
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for event_type in sorted(set(publishes) | set(received)):
        model = CATALOG[event_type]
        name = model.__name__
        messages[name] = {
            "name": event_type,
            "contentType": "application/json",
            "payload": model.model_json_schema(ref_template="#/components/schemas/{model}"),
            "x-version": model.version,
        }
        channels[event_type] = {
            "address": event_type,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {
                "amqp": {"is": "routingKey", "exchange": {"name": EVENTS_EXCHANGE, "type": "topic"}}
            },
        }
        ref = {"$ref": f"#/channels/{event_type}"}
        if event_type in publishes:
            operations[f"publish.{event_type}"] = {"action": "send", "channel": ref}
        if event_type in received:
            queue = next(q.name for q in consumes if event_type in q.routing_keys)
            operations[f"receive.{event_type}"] = {
                "action": "receive",
                "channel": ref,
                "bindings": {"amqp": {"queue": queue}},
            }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": title, "version": "1.0.0"},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
