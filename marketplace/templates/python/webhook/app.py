"""{{name}}: posts each `order.created` and `order.paid` to a webhook (`webhook` template).

The request is a POST to the install's secret `webhook-url`, with `content-type:
application/json` and the body `{"event": <event type>, "id": <event id>, "order": <payload>}`.
The event id stays the same when the marketplace retries an event, so the receiver can use it
to drop duplicates.

- A 2xx answer: data `{"delivered": true, "status": <status>}`.
- Any other status: `upstream` naming the status, so the event may be retried. A transport
  failure is `upstream` too (the SDK maps it).
- The secret `webhook-url` not set (or empty): `invalid-config`.
- A payload that is not a JSON object: `invalid-payload`.

The payload is checked before the secret is read, and nothing is sent on an error. The URL is
never logged: webhook URLs often carry an access token.
"""

import nexus_sdk as sdk
from nexus_sdk import ErrorKind, Event, Outcome, Payload, PluginError
from wit_world.imports import config, http

NAME = "{{name}}"
# Must equal `version` in nexus.toml: `nexus plugin check` compares describe() with it.
VERSION = "0.1.0"


def on_order(event: Event) -> Outcome:
    order = Payload(event.payload).fields
    url = config.secret("webhook-url")
    if not url:
        raise PluginError.invalid_config("secret webhook-url is not set")

    body = sdk.json_data({"event": event.event_type, "id": event.id, "order": order})
    request = http.Request(
        method=http.Method.POST,
        url=url,
        headers=[("content-type", "application/json")],
        body=body.encode(),
    )
    status = http.send(request).status
    sdk.info(f"{event.event_type} {event.id}: the webhook answered {status}")
    if not 200 <= status <= 299:
        raise PluginError(ErrorKind.UPSTREAM, f"the webhook answered HTTP {status}")
    return Outcome(data=sdk.json_data({"delivered": True, "status": status}), actions=[])


# componentize-py exports the class named after the `handler` interface.
Handler = sdk.plugin(NAME, VERSION, {"order.created": on_order, "order.paid": on_order})
