"""Dates as the site's URLs name them (/2024/Sep/25/): month names, the UTC start and end of a year,
month or day named in a URL (404 for one the calendar lacks), and the archive's months by year.

Nothing here touches the database.
"""

from datetime import datetime, timedelta, timezone

from django.http import Http404

from .rules import LAST_DAY

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def utc_datetime(year, month=1, day=1):
    """Midnight UTC on a date named in a URL, or 404 if there is no such date (Feb 30, year 0 or 99999)."""
    try:
        return datetime(year, month, day, tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        raise Http404("No such date")


def month_number(month):
    """1 for "Jan" ... 12 for "Dec"; 404 for anything else."""
    if month not in MONTHS:
        raise Http404("No such month")
    return MONTHS.index(month) + 1


# What people type for a month in an address: "jan", "JAN", "january", "1" and "01" all mean "Jan".
TYPED_MONTHS = {
    typed: name
    for number, name in enumerate(MONTHS, start=1)
    for typed in (name.lower(), datetime(2000, number, 1).strftime("%B").lower(), str(number), f"{number:02}")
}


def canonical_month(month):
    """The month as URLs write it ("Jan") for what people type, or None."""
    return TYPED_MONTHS.get(month.lower())


def day_range(year, month, day):
    """The UTC start and end of a day named in a URL, or 404 if there is no such day."""
    start = utc_datetime(year, month_number(month), day)
    try:
        return start, start + timedelta(days=1)
    except OverflowError:
        raise Http404("No such day")


def year_range(year):
    """The UTC start and end of a year named in a URL, or 404."""
    return utc_datetime(year), period_end(year + 1, 1)


def month_range(year, month):
    """The UTC start and end of a month named in a URL ("Jan"...), or 404."""
    return month_span(year, month_number(month))


def month_span(year, number):
    """The UTC start and end of month `number` (1 to 12) of `year`."""
    return utc_datetime(year, number), period_end(year + number // 12, number % 12 + 1)


def period_end(year, month):
    """Midnight UTC starting the month after a period; after 9999 (which has no year 10000), the
    last day of the calendar, which no post reaches (rules.LAST_DAY)."""
    return LAST_DAY if year > 9999 else utc_datetime(year, month)


def months_by_year(counts):
    """(year, month, count) rows grouped as [{"year", "count", "months": [{"name", "date", "count"}]}]."""
    years = {}
    for year, month, count in counts:
        entry = years.setdefault(year, {"year": year, "count": 0, "months": []})
        entry["count"] += count
        entry["months"].append({"name": MONTHS[month - 1], "date": datetime(year, month, 1), "count": count})
    return list(years.values())
