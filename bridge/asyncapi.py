"""PURE: the AsyncAPI 3.0 document of what the bridge publishes, built from the table contract."""

from __future__ import annotations

from typing import Any

import yaml

from . import contract
from .events import APP_ID, CONTENT_TYPE, INT32_MAX, TYPE_PREFIX, exchange_name
from .opendental import KNOWN_TABLES, Table, table

AMQP_BINDING = "0.3.0"
PREFIX = "opendental"  # amqp.exchange_prefix's default; another prefix renames every exchange
_UUID = "^[0-9a-f]{8}-[0-9a-f]{4}-[48][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"

_REQUIRED = (
    "specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "odcustomer",
    "data",
)  # fmt: skip
_INFO = """\
Open Dental API Events as CloudEvents 1.0 (structured JSON, CloudEvents RabbitMQ binding), one
message per row, on one durable topic exchange per event type. Exchange names here use the
default prefix `opendental` (`amqp.exchange_prefix`). Messages are persistent, published with
`mandatory` and confirmed; `message_id` is the event id (dedupe on it), `type` the CloudEvents
type, `timestamp` the time received, `app_id` `od-bridge`. What no queue is bound for goes to
the alternate exchange `opendental.unrouted`. The same JSON Schemas are shipped in the
`bridge/schemas` package and served by the daemon at `GET /schemas/v1/{type}.json`.
"""

_PARAMETERS = {
    "customer": {"description": "the customer's `name` in the bridge's configuration"},
    "clinic": {"description": "`odclinic`: the row's ClinicNum; `0` when absent or not a number"},
    "workstation": {"description": "the `Workstation` header; `_` when absent"},
}


def envelope_schema() -> dict[str, Any]:
    """The CloudEvents attributes every message carries (its `data` is per type)."""
    return {
        "type": "object",
        "description": "CloudEvents 1.0, structured JSON mode.",
        "required": list(_REQUIRED),
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {
                "type": "string",
                "format": "uuid",
                "pattern": _UUID,
                "description": "UUIDv8 hash of the row state for database rows (the same state "
                "always has the same id); UUIDv4 for UI events",
            },
            "source": {"type": "string", "pattern": "^/opendental/", "format": "uri-reference"},
            "type": {"type": "string", "pattern": "^com\\.opendental\\.(db|ui)\\."},
            "subject": {"type": "string", "description": "{Type}/{primary key}; absent without"},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "dataschema": {"type": "string", "format": "uri"},
            "odcustomer": {"type": "string"},
            "odworkstation": {"type": "string", "description": "absent without the header"},
            "odclinic": {
                "type": "integer",
                "minimum": 0,
                "maximum": INT32_MAX,
                "description": "ClinicNum; absent when it is not a number within int32",
            },
            "data": {"type": "object"},
        },
        "additionalProperties": True,
    }


def _without_dialect(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "$schema"}


def _event_schema(t: Table, name: str) -> dict[str, Any]:
    path = contract.schema_path(t).replace(".", "\\.")
    return {
        "allOf": [
            {"$ref": "#/components/schemas/cloudEvent"},
            {
                "properties": {
                    "type": {"const": contract.event_type(t)}
                    if t.shape is not None
                    else {"pattern": f"^com\\.opendental\\.{t.kind}\\."},
                    "dataschema": {"pattern": f"/{path}$"},
                    "data": {"$ref": f"#/components/schemas/{name}"},
                }
            },
        ]
    }


def _channel(t: Table, name: str, exchange: str) -> dict[str, Any]:
    return {
        "address": "{customer}.{clinic}.{workstation}",
        "title": f"{exchange}, routing key {{customer}}.{{clinic}}.{{workstation}}",
        "description": f"Exchange `{exchange}`: {contract.event_type(t)} events.",
        "parameters": _PARAMETERS,
        "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {
                    "name": exchange,
                    "type": "topic",
                    "durable": True,
                    "autoDelete": False,
                    "vhost": "/",
                },
                "bindingVersion": AMQP_BINDING,
            }
        },
    }


def _message(t: Table, name: str) -> dict[str, Any]:
    known = t.shape is not None
    ce_type = contract.event_type(t) if known else f"{TYPE_PREFIX}.{t.kind}.{{Name}}"
    return {
        "name": ce_type,
        "title": f"{t.name} event"
        if known
        else f"{t.kind} event of a type the bridge does not know",
        "contentType": CONTENT_TYPE,
        "description": f"AMQP properties: delivery_mode 2, content_type {CONTENT_TYPE}, "
        f"message_id = id, type = {ce_type}, timestamp = time received, app_id {APP_ID}.",
        "payload": {"$ref": f"#/components/schemas/{name}Event"},
        "bindings": {"amqp": {"messageType": ce_type, "bindingVersion": AMQP_BINDING}},
    }


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document: one channel, operation and message per event type."""
    types = [*KNOWN_TABLES, table("db", "Unknown"), table("ui", "Unknown")]
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {"cloudEvent": envelope_schema()}
    for t in types:
        name = contract.schema_name(t) if t.shape is not None else f"{t.kind}Unknown"
        exchange = exchange_name(PREFIX, t.kind, t.name)
        channels[name] = _channel(t, name, exchange)
        messages[name] = _message(t, name)
        schemas[f"{name}Event"] = _event_schema(t, name)
        schemas[name] = _without_dialect(contract.table_schema(t))
        operations[f"publish_{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
            "bindings": {
                "amqp": {
                    "deliveryMode": 2,
                    "mandatory": True,
                    "timestamp": True,
                    "bindingVersion": AMQP_BINDING,
                }
            },
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "od-bridge events",
            "version": f"{contract.SCHEMA_VERSION.removeprefix('v')}.0.0",
            "description": _INFO,
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "rabbitmq": {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "The broker of `amqp.url`.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


class _NoAliases(yaml.SafeDumper):
    """Writes a repeated object out each time: anchors and aliases read badly in a contract."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render() -> str:
    """The document as the YAML of `asyncapi.yaml`."""
    header = "# Generated by `od-bridge schema asyncapi` from bridge/od_tables.py: do not edit.\n"
    body = yaml.dump(document(), Dumper=_NoAliases, sort_keys=False, width=100, allow_unicode=True)
    return header + body
