"""Onboarding a caseload: roster discovery (`roster suggest`), import (`roster import`) and
match coverage for `check` and `status`.

Client names pass through these modules only on their way to the therapist's terminal or to
a file she asked for (0600); log lines and exception messages carry counts, ids and line
numbers, never names, phones or titles.
"""
