"""The pure core's parameters, built from the settings in one place.

The rules, placement, render and attendance modules take plain values (`rules.Policy`,
`placement.Hours`, `render.Practice`, `attendance.MarkerRules`) so they never see the config
loader; this module is the only translation between the two.
"""

from __future__ import annotations

from worker import attendance, placement, render, rules
from worker.config import Settings


def policy_of(settings: Settings) -> rules.Policy:
    r = settings.rules
    return rules.Policy(
        late_after=r.late_after,
        rebook_within=r.rebook_within,
        cancel_grace=r.cancel_grace,
        lapse_after=r.lapse_after,
        termination_after=r.termination_after,
        acquainted_gap=r.acquainted_gap,
        lookahead=r.lookahead,
        max_age=r.max_age,
        check_in=bool(settings.markers.arrived),
    )


def hours_of(settings: Settings) -> placement.Hours:
    office = settings.practice.office_hours
    return placement.Hours(
        tz=settings.practice.tz,
        weekdays=office.weekdays,
        start=office.start,
        end=office.end,
        slot=settings.rules.slot,
    )


def practice_of(settings: Settings) -> render.Practice:
    p = settings.practice
    return render.Practice(tz=p.tz, therapist_name=p.therapist_name, callback_number=p.callback_number)


def markers_of(settings: Settings) -> attendance.MarkerRules:
    m = settings.markers
    return attendance.MarkerRules(
        no_show=m.no_show,
        cancelled=m.cancelled,
        arrived=m.arrived,
        no_show_colors=m.no_show_colors,
        cancelled_colors=m.cancelled_colors,
    )
