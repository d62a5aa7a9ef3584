"""{{name}}: counts the words of each `document.submitted` (`metered` template).

Words are the runs of non-whitespace in the payload's `text` (required, a string). Each event
adds its count to the install's running total in KV (key `total-words`, decimal text such as
`1234`), reports that many units on the meter `words` (which the manifest's per-word plan
bills), and returns data `{"words": <this document>, "total": <all documents so far>}`.

KV writes are committed only when the event succeeds, and the host holds the install's KV
for the whole invocation, so concurrent events cannot lose an update. Usage is never rolled
back, so it is reported last, once the work it bills for has succeeded. A retried event
counts again.
"""

import nexus_sdk as sdk
from nexus_sdk import Event, Outcome, Payload, PluginError
from wit_world.imports import kv, usage

NAME = "{{name}}"
# Must equal `version` in nexus.toml: `nexus plugin check` compares describe() with it.
VERSION = "0.1.0"

TOTAL_KEY = "total-words"
METER = "words"


def on_document_submitted(event: Event) -> Outcome:
    words = len(Payload(event.payload).string("text").split())
    total = read_total() + words
    kv.set(TOTAL_KEY, str(total).encode())
    usage.report(METER, words)

    sdk.info(f"event {event.id}: {words} words, {total} in all")
    return Outcome(data=sdk.json_data({"words": words, "total": total}), actions=[])


def read_total() -> int:
    stored = kv.get(TOTAL_KEY)
    if stored is None:
        return 0
    if not stored.isdigit():  # bytes: ASCII digits only
        raise PluginError.internal(f"kv {TOTAL_KEY} does not hold a number")
    return int(stored)


# componentize-py exports the class named after the `handler` interface.
Handler = sdk.plugin(NAME, VERSION, {"document.submitted": on_document_submitted})
