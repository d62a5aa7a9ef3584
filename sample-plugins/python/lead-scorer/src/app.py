"""Lead scorer: scores each `user.signup` from 0 to 100 with the rules in `scoring.py`, and
asks the CRM to tag the lead `hot-lead` when the score reaches the install's `min-score`.

Config: `min-score` (integer 0-100, default 50) and `target-countries` (comma-separated
ISO 3166 alpha-2 codes, default `scoring.DEFAULT_TARGET_COUNTRIES`). Each scored lead
reports one `leads-scored` usage unit. The email address is never logged, only its domain.
"""

from typing import FrozenSet

import nexus_sdk as sdk
import scoring
from nexus_sdk import Action, Event, Outcome, Payload, PluginError
from wit_world.imports import config, usage

NAME = "lead-scorer"
# Must equal `version` in nexus.toml: `nexus plugin check` compares describe() with it.
VERSION = "0.1.0"

DEFAULT_MIN_SCORE = 50
HOT_LEAD_TAG = "hot-lead"
METER = "leads-scored"


def on_signup(event: Event) -> Outcome:
    payload = Payload(event.payload)
    email = payload.string("email")
    domain = scoring.email_domain(email)
    if domain is None:
        raise PluginError.invalid_payload("payload field email must be an email address")
    employees = payload.optional_integer("employees")
    if employees is not None and employees < 0:
        raise PluginError.invalid_payload("payload field employees must be a non-negative integer")
    lead = scoring.Lead(
        email_domain=domain,
        company=payload.optional_string("company"),
        employees=employees,
        country=payload.optional_string("country"),
        title=payload.optional_string("title"),
    )
    min_score = read_min_score()
    result = scoring.score(lead, read_target_countries())
    hot = result.score >= min_score

    actions = []
    if hot:
        actions.append(Action(kind="crm.tag", payload=sdk.json_data({"email": email, "tag": HOT_LEAD_TAG})))
    usage.report(METER, 1)
    sdk.info(f"scored a lead at {domain}: {result.score}/{scoring.MAX_SCORE} (min {min_score}){' hot' if hot else ''}")
    data = {
        "score": result.score,
        "hot": hot,
        "min_score": min_score,
        "points": result.points,
        "disposable": result.disposable,
    }
    return Outcome(data=sdk.json_data(data), actions=actions)


def read_min_score() -> int:
    text = config.get("min-score")
    if text is None:
        return DEFAULT_MIN_SCORE
    try:
        value = int(text.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= scoring.MAX_SCORE:
        raise PluginError.invalid_config(f"config min-score must be an integer from 0 to 100, got {text!r}")
    return value


def read_target_countries() -> FrozenSet[str]:
    text = config.get("target-countries")
    if text is None:
        return scoring.DEFAULT_TARGET_COUNTRIES
    try:
        return scoring.parse_countries(text)
    except ValueError as e:
        raise PluginError.invalid_config(f"config target-countries: {e}") from None


# componentize-py exports the class named after the `handler` interface.
Handler = sdk.plugin(NAME, VERSION, {"user.signup": on_signup})
