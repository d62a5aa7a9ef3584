"""{{name}}: normalizes each `contact.updated` into one contact shape (`transform` template).

The result (`outcome.data`) always has these five keys, `null` where the contact has no value.
A blank value counts as none, and other payload fields are ignored.

- `email`: the payload's `email` (required), trimmed and lower-cased; it must contain `@`.
- `first_name`, `last_name`: `name` split at whitespace: the first word, then the other words
  joined by single spaces (`last_name` is `null` for a one-word name).
- `phone`: the digits 0-9 of `phone`, nothing else.
- `country`: `country` trimmed and upper-cased or, when the payload has none, the install's
  config `default-country`, normalized the same way.

The contact's details are never logged: they are personal data.
"""

import re
from typing import Optional, Tuple

import nexus_sdk as sdk
from nexus_sdk import Event, Outcome, Payload, PluginError
from wit_world.imports import config

NAME = "{{name}}"
# Must equal `version` in nexus.toml: `nexus plugin check` compares describe() with it.
VERSION = "0.1.0"


def on_contact_updated(event: Event) -> Outcome:
    payload = Payload(event.payload)
    email = payload.string("email").strip().lower()
    if "@" not in email:
        raise PluginError.invalid_payload("payload field email must be an email address")
    first_name, last_name = split_name(payload.optional_string("name") or "")
    phone = re.sub("[^0-9]", "", payload.optional_string("phone") or "") or None
    country = country_code(payload.optional_string("country")) or country_code(config.get("default-country"))

    sdk.info(f"normalized the contact of event {event.id}")
    contact = {"email": email, "first_name": first_name, "last_name": last_name, "phone": phone, "country": country}
    return Outcome(data=sdk.json_data(contact), actions=[])


def split_name(name: str) -> Tuple[Optional[str], Optional[str]]:
    """`" Dana  Katherine Scully"` -> `("Dana", "Katherine Scully")`; a blank name -> `(None, None)`."""
    words = name.split()
    if not words:
        return None, None
    return words[0], " ".join(words[1:]) or None


def country_code(text: Optional[str]) -> Optional[str]:
    """Trimmed and upper-cased; `None` for an absent or blank value."""
    return (text or "").strip().upper() or None


# componentize-py exports the class named after the `handler` interface.
Handler = sdk.plugin(NAME, VERSION, {"contact.updated": on_contact_updated})
