"""The scoring rules, run with the machine's Python: `python3 -m unittest discover -s tests`.

`scoring.py` imports nothing from the bindings, so it needs no component build.
"""

import sys
import unittest
from pathlib import Path

# No __pycache__ in src/: `nexus build` (componentize-py -p src) bundles that folder into the component.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import scoring  # noqa: E402
from scoring import Lead  # noqa: E402


class ScoringTest(unittest.TestCase):
    def test_every_rule_at_its_maximum_makes_100(self):
        lead = Lead("acme.io", company="Acme", employees=5000, country="us", title="Co-Founder & CEO")
        result = scoring.score(lead)
        self.assertEqual(result.score, 100)
        self.assertEqual(result.points, {"work_email": 30, "company": 10, "employees": 35, "country": 15, "title": 10})

    def test_free_mail_scores_no_work_email_points(self):
        self.assertEqual(scoring.score(Lead("gmail.com")).points["work_email"], 0)
        self.assertEqual(scoring.score(Lead("acme.io")).points["work_email"], 30)

    def test_disposable_mail_scores_zero_whatever_else(self):
        lead = Lead("mailinator.com", company="Acme", employees=5000, country="US", title="CEO")
        result = scoring.score(lead)
        self.assertEqual((result.score, result.disposable), (0, True))

    def test_employee_bands_include_their_upper_bound(self):
        cases = {None: 0, 0: 0, 1: 5, 10: 5, 11: 15, 50: 15, 51: 25, 250: 25, 251: 30, 1000: 30, 1001: 35}
        for employees, points in cases.items():
            self.assertEqual(scoring.employee_points(employees), points, employees)

    def test_decision_maker_titles_match_whole_words(self):
        self.assertTrue(scoring.is_decision_maker("Head of Sales"))
        self.assertTrue(scoring.is_decision_maker("vp, marketing"))
        self.assertFalse(scoring.is_decision_maker("Headhunter"))
        self.assertFalse(scoring.is_decision_maker("Software Engineer"))

    def test_email_domain_needs_a_local_part_and_a_dotted_domain(self):
        self.assertEqual(scoring.email_domain("Dana@Acme.IO"), "acme.io")
        for bad in ("dana", "@acme.io", "dana@localhost", "dana@acme."):
            self.assertIsNone(scoring.email_domain(bad), bad)

    def test_target_countries_parse_and_refuse_bad_codes(self):
        self.assertEqual(scoring.parse_countries("us, de,GB"), frozenset({"US", "DE", "GB"}))
        for bad in ("", "USA", "u1"):
            with self.assertRaises(ValueError):
                scoring.parse_countries(bad)


if __name__ == "__main__":
    unittest.main()
