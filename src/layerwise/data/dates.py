"""A date-normalisation data set the project generates itself: dates written in many
formats → ISO ``YYYY-MM-DD``.

    >>> rows = generate(4, seed=0)
    >>> sorted(rows)
    ['format', 'iso', 'text']

Every format has one fixed reading, so the task is well defined:

- **Years** run from 1950 to 2049. A two-digit year ``yy`` means 19yy for 50-99 and 20yy
  for 00-49 (the pivot of POSIX ``strptime``'s ``%y`` moved to the data's range), so it
  never needs guessing.
- **Numeric day/month order** is fixed by the separator: slashes and dots are day first
  (``03/04/1999``, ``3.4.1999``: 3 April, as in Britain and Germany), hyphens are month
  first (``04-03-1999``: April 3, as in US forms), and a leading four-digit year is always
  year-month-day (``1999.04.03``, ``1999/4/3``, ``19990403``, ``1999-04-03``).
- Month and weekday names are English, full or three-letter, in title, lower or upper
  case; weekdays always agree with the date.

Rows are drawn from ``random.Random(seed).random()`` alone (the one stream Python promises
to keep across versions), so a seed gives the same rows everywhere. The test part uses
days that never occur in the training part (10% of all days, chosen by the seed), so its
score measures reading unseen dates, not recalling seen ones.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
FIRST, LAST = dt.date(1950, 1, 1), dt.date(2049, 12, 31)
TEST_SHARE = 0.1  # of all days, held out for the test part


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _yy(d: dt.date) -> str:
    return f"{d.year % 100:02d}"


def _month(d: dt.date) -> str:
    return MONTHS[d.month - 1]


def _mon(d: dt.date) -> str:
    return MONTHS[d.month - 1][:3]


def _dow(d: dt.date) -> str:
    return WEEKDAYS[d.weekday()]


# name → how a date is written; names go into the ``format`` column
FORMATS: dict[str, Callable[[dt.date], str]] = {
    "iso": lambda d: d.isoformat(),
    "dd/mm/yyyy": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",
    "dd/mm/yy": lambda d: f"{d.day:02d}/{d.month:02d}/{_yy(d)}",
    "d/m/yyyy": lambda d: f"{d.day}/{d.month}/{d.year}",
    "dd.mm.yyyy": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    "d.m.yy": lambda d: f"{d.day}.{d.month}.{_yy(d)}",
    "mm-dd-yyyy": lambda d: f"{d.month:02d}-{d.day:02d}-{d.year}",
    "yyyy.mm.dd": lambda d: f"{d.year}.{d.month:02d}.{d.day:02d}",
    "yyyy/m/d": lambda d: f"{d.year}/{d.month}/{d.day}",
    "yyyymmdd": lambda d: f"{d.year}{d.month:02d}{d.day:02d}",
    "Month d, yyyy": lambda d: f"{_month(d)} {d.day}, {d.year}",
    "Mon d, yyyy": lambda d: f"{_mon(d)} {d.day}, {d.year}",
    "d Month yyyy": lambda d: f"{d.day} {_month(d)} {d.year}",
    "d Mon yy": lambda d: f"{d.day} {_mon(d)} {_yy(d)}",
    "dd-Mon-yyyy": lambda d: f"{d.day:02d}-{_mon(d)}-{d.year}",
    "dth of Month yyyy": lambda d: f"{_ordinal(d.day)} of {_month(d)} {d.year}",
    "the dth of Month, yyyy": lambda d: f"the {_ordinal(d.day)} of {_month(d)}, {d.year}",
    "Month dth, yyyy": lambda d: f"{_month(d)} {_ordinal(d.day)}, {d.year}",
    "Dow d Mon yyyy": lambda d: f"{_dow(d)[:3]} {d.day} {_mon(d)} {d.year}",
    "Weekday, Month d, yyyy": lambda d: f"{_dow(d)}, {_month(d)} {d.day}, {d.year}",
    "yyyy Month d": lambda d: f"{d.year} {_month(d)} {d.day}",
}


def _case(text: str, r: float) -> str:
    """Title case mostly; lower or upper case now and then (names only change)."""
    return text.lower() if r < 0.15 else text.upper() if r < 0.25 else text


def split_days(seed: int) -> tuple[list[dt.date], list[dt.date]]:
    """All days of the range, shuffled by ``seed`` and cut into (train days, test days)."""
    rng = random.Random(seed)
    days = [FIRST + dt.timedelta(i) for i in range((LAST - FIRST).days + 1)]
    for i in range(len(days) - 1, 0, -1):  # Fisher-Yates with random() only
        j = int(rng.random() * (i + 1))
        days[i], days[j] = days[j], days[i]
    n_test = int(len(days) * TEST_SHARE)
    return days[n_test:], days[:n_test]


def generate(n: int, seed: int = 0, days: list[dt.date] | None = None) -> dict[str, list[str]]:
    """``n`` rows ``{"text", "iso", "format"}``: a day from ``days`` (default: the whole
    range) written in a format, both drawn uniformly."""
    rng = random.Random(seed)
    days = days or [FIRST + dt.timedelta(i) for i in range((LAST - FIRST).days + 1)]
    names = list(FORMATS)
    out: dict[str, list[str]] = {"text": [], "iso": [], "format": []}
    for _ in range(n):
        d = days[int(rng.random() * len(days))]
        name = names[int(rng.random() * len(names))]
        out["text"].append(_case(FORMATS[name](d), rng.random()))
        out["iso"].append(d.isoformat())
        out["format"].append(name)
    return out


def parts(n_train: int = 30_000, n_test: int = 3_000, seed: int = 0
          ) -> dict[str, dict[str, list[str]]]:
    """The catalogue's ``dates``: a training part and a test part on disjoint days."""
    train_days, test_days = split_days(seed)
    return {"train": generate(n_train, seed + 1, train_days),
            "test": generate(n_test, seed + 2, test_days)}
