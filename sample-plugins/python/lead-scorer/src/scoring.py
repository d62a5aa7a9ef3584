"""The lead-score rules: pure functions, no host calls, so they are tested with plain Python.

A score is the sum of five rules and is at most 100:

| rule       | points | when |
|------------|--------|------|
| work_email | 30     | the email's domain is not a free-mail provider |
| company    | 10     | `company` is given and not blank |
| employees  | 5 / 15 / 25 / 30 / 35 | 1–10 / 11–50 / 51–250 / 251–1000 / more than 1000 |
| country    | 15     | `country` (ISO 3166 alpha-2) is one of the target countries |
| title      | 10     | `title` names a decision maker (founder, owner, chief, CxO, VP, head, director) |

An email at a disposable-mail domain scores 0 whatever the other fields say.
"""

from dataclasses import dataclass
from typing import Dict, FrozenSet, Optional

MAX_SCORE = 100

FREE_MAIL_DOMAINS: FrozenSet[str] = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "ymail.com", "hotmail.com", "outlook.com",
    "live.com", "msn.com", "icloud.com", "me.com", "aol.com", "proton.me", "protonmail.com",
    "gmx.com", "gmx.de", "web.de", "mail.com", "yandex.ru", "mail.ru", "qq.com", "163.com",
})

DISPOSABLE_DOMAINS: FrozenSet[str] = frozenset({
    "mailinator.com", "guerrillamail.com", "10minutemail.com", "tempmail.com",
    "trashmail.com", "yopmail.com", "sharklasers.com",
})

DEFAULT_TARGET_COUNTRIES: FrozenSet[str] = frozenset({"US", "CA", "GB", "IE", "DE", "FR", "NL", "AU"})

# Upper bounds (inclusive) of the employee bands and their points; above the last, 35.
EMPLOYEE_BANDS = ((10, 5), (50, 15), (250, 25), (1000, 30))
LARGEST_COMPANY_POINTS = 35

DECISION_MAKER_WORDS = ("founder", "owner", "chief", "ceo", "cto", "cfo", "coo", "cmo",
                        "vp", "vice president", "head", "director")


@dataclass(frozen=True)
class Lead:
    email_domain: str
    company: Optional[str] = None
    employees: Optional[int] = None
    country: Optional[str] = None
    title: Optional[str] = None


@dataclass(frozen=True)
class Score:
    score: int
    points: Dict[str, int]
    disposable: bool


def email_domain(email: str) -> Optional[str]:
    """The lower-cased domain of a plausible address, or None."""
    local, at, domain = email.strip().rpartition("@")
    if not at or not local or "." not in domain or domain.startswith(".") or domain.endswith("."):
        return None
    return domain.lower()


def employee_points(employees: Optional[int]) -> int:
    if not employees:
        return 0
    for upper, points in EMPLOYEE_BANDS:
        if employees <= upper:
            return points
    return LARGEST_COMPANY_POINTS


def is_decision_maker(title: Optional[str]) -> bool:
    if not title:
        return False
    words = title.lower().replace(",", " ").replace("-", " ")
    padded = f" {words} "
    return any(f" {word} " in padded for word in DECISION_MAKER_WORDS)


def score(lead: Lead, target_countries: FrozenSet[str] = DEFAULT_TARGET_COUNTRIES) -> Score:
    if lead.email_domain in DISPOSABLE_DOMAINS:
        zero = {"work_email": 0, "company": 0, "employees": 0, "country": 0, "title": 0}
        return Score(score=0, points=zero, disposable=True)
    points = {
        "work_email": 0 if lead.email_domain in FREE_MAIL_DOMAINS else 30,
        "company": 10 if lead.company and lead.company.strip() else 0,
        "employees": employee_points(lead.employees),
        "country": 15 if lead.country and lead.country.strip().upper() in target_countries else 0,
        "title": 10 if is_decision_maker(lead.title) else 0,
    }
    return Score(score=min(sum(points.values()), MAX_SCORE), points=points, disposable=False)


def parse_countries(text: str) -> FrozenSet[str]:
    """`"us, de,GB"` -> {"US", "DE", "GB"}; raises ValueError on anything but 2-letter codes."""
    codes = [part.strip().upper() for part in text.split(",") if part.strip()]
    bad = [code for code in codes if len(code) != 2 or not code.isalpha()]
    if bad or not codes:
        raise ValueError(f"expected comma-separated ISO 3166 alpha-2 codes, got {text!r}")
    return frozenset(codes)
