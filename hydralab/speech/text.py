"""Written text -> spoken form (what a caller would say), WER normalization and WER.

Rules of :func:`spoken_form`, applied in this order:

1. Phone numbers ``555-123-4567`` / ``(555) 123-4567`` -> digits one by one, groups separated
   by commas.
2. Dates: ISO ``2026-03-25``, US ``3/25/2026`` / ``3/25``, ``March 25[th][, 2026]``
   (also ``Mar 25``) -> ``March twenty-fifth, twenty twenty-six``; ``25 March`` ->
   ``the twenty-fifth of March``.
3. Times: ``9:25 AM`` -> ``nine twenty-five A M``, ``4:00 PM`` -> ``four P M``, ``4pm`` ->
   ``four P M``, ``9:05`` -> ``nine oh five``, ``4:00`` -> ``four o'clock``,
   ``16:00`` -> ``sixteen hundred``.
4. Money: ``$120`` -> ``one hundred twenty dollars``, ``$115.50`` -> ``one hundred fifteen
   dollars and fifty cents`` (also EUR and GBP signs).
5. Percentages ``15%`` -> ``fifteen percent``.
6. Ordinals ``25th`` -> ``twenty-fifth``.
7. Codes: tokens of >= 2 characters mixing letters and digits (``ZK3FFW``, ``SK703``) are
   spelled character by character, digits as words: ``Z K three F F W`` (``2B`` ->
   ``two B``).
8. All-caps tokens of 2-8 letters (``AUS``, ``PNR``, ``AM``) are spelled letter by letter
   (``A U S``), except a few words said as words (``OK`` -> ``okay``, ``PIN``) and except
   when the text itself is shouted (most of its words are all-caps).
9. Decimals ``3.5`` -> ``three point five``; integers -> words (``1,200`` -> ``one thousand
   two hundred``); integers with a leading zero or of 6+ digits are read digit by digit.
"""

from __future__ import annotations

import re

__all__ = [
    "MONTHS",
    "cardinal",
    "normalize_for_wer",
    "ordinal",
    "spell",
    "spoken_form",
    "wer",
    "word_edit_distance",
    "year_words",
]

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = (
    (10**12, "trillion"),
    (10**9, "billion"),
    (10**6, "million"),
    (1000, "thousand"),
)
_ORDINAL_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_MONTH_BY_PREFIX = {m[:3].lower(): m for m in MONTHS}
_WORD_CAPS = {"OK": "okay", "PIN": "pin", "COVID": "covid", "NASA": "NASA"}


def cardinal(n: int) -> str:
    """Cardinal number words, US style without "and": 120 -> ``one hundred twenty``."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {cardinal(rest)}" if rest else "")
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return f"{cardinal(head)} {name}" + (f" {cardinal(rest)}" if rest else "")
    raise AssertionError("unreachable")  # pragma: no cover


def ordinal(n: int) -> str:
    """Ordinal number words: 25 -> ``twenty-fifth``."""
    words = cardinal(n)
    m = re.search(r"[a-z]+$", words)
    assert m is not None
    last = m.group(0)
    if last in _ORDINAL_IRREGULAR:
        new = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        new = last[:-1] + "ieth"
    else:
        new = last + "th"
    return words[: m.start()] + new


def year_words(n: int) -> str:
    """A year as said aloud: 2026 -> ``twenty twenty-six``, 1905 -> ``nineteen oh five``."""
    if n < 1000 or n > 9999 or 2000 <= n <= 2009 or n % 1000 == 0:
        return cardinal(n)
    hi, lo = divmod(n, 100)
    if lo == 0:
        return f"{cardinal(hi)} hundred"
    if lo < 10:
        return f"{cardinal(hi)} oh {_ONES[lo]}"
    return f"{cardinal(hi)} {cardinal(lo)}"


def spell(token: str) -> str:
    """Spell a token character by character, digits as words: ``ZK3`` -> ``Z K three``."""
    out = [_ONES[int(ch)] if ch.isdigit() else ch.upper() for ch in token if ch.isalnum()]
    return " ".join(out)


def _digits(s: str) -> str:
    return " ".join(_ONES[int(ch)] for ch in s if ch.isdigit())


def _clock(hour: int, minute: int, ampm: str | None) -> str:
    if ampm is not None:
        suffix = " A M" if ampm.lower().startswith("a") else " P M"
        if minute == 0:
            return cardinal(hour) + suffix
    else:
        suffix = ""
        if minute == 0:
            return (
                f"{cardinal(hour)} hundred"
                if hour > 12 or hour == 0
                else (f"{cardinal(hour)} o'clock")
            )
    mins = f"oh {_ONES[minute]}" if minute < 10 else cardinal(minute)
    return f"{cardinal(hour)} {mins}{suffix}"


def _date(month: int, day: int, year: int | None) -> str | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    out = f"{MONTHS[month - 1]} {ordinal(day)}"
    if year is not None:
        out += f", {year_words(year)}"
    return out


def _money(amount: str, cents: str | None, unit: tuple[str, str, str, str]) -> str:
    one, many, cent_one, cent_many = unit
    whole = int(amount.replace(",", ""))
    c = 0
    if cents:
        c = int(cents.ljust(2, "0")[:2])
    parts = []
    if whole or not c:
        parts.append(f"{cardinal(whole)} {one if whole == 1 else many}")
    if c:
        parts.append(f"{cardinal(c)} {cent_one if c == 1 else cent_many}")
    return " and ".join(parts)


_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
}

_AMPM = r"(?P<ampm>[AaPp]\.?\s?[Mm])(?![A-Za-z])"
_MONTH_RE = (
    r"(?P<month>Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|"
    r"Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)

_RE_PHONE = re.compile(r"(?<!\d)(?:\((\d{3})\)\s?|(\d{3})[-.\s])(\d{3})[-.\s](\d{4})(?!\d)")
_RE_ISO_DATE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_RE_US_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{4}))?\b")
_RE_MONTH_DAY = re.compile(
    r"\b" + _MONTH_RE + r"\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?\b(?:,?\s+(?P<year>\d{4})\b)?"
)
_RE_DAY_MONTH = re.compile(r"\b(?P<day>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH_RE + r"\b")
_RE_TIME = re.compile(r"\b(?P<h>\d{1,2}):(?P<m>\d{2})\b(?:\s?" + _AMPM + r")?")
_RE_HOUR_AMPM = re.compile(r"\b(?P<h>\d{1,2})\s?" + _AMPM)
_RE_MONEY = re.compile(
    r"(?P<cur>[$€£])\s?(?P<amt>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<cents>\d{1,2}))?\b"
)
_RE_PERCENT = re.compile(r"\b(\d+(?:\.\d+)?)\s?%")
_RE_ORDINAL = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b", re.IGNORECASE)
_RE_CODE = re.compile(
    r"(?<![\w'])(?=[A-Za-z0-9]*[A-Za-z])(?=[A-Za-z0-9]*\d)[A-Za-z0-9]{2,}(?![\w'])"
)
_RE_CAPS = re.compile(r"(?<![\w'])[A-Z]{2,8}(?![\w'])")
_RE_DECIMAL = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?!\.?\d)")
_RE_GROUPED_INT = re.compile(r"(?<![\d,.])\d{1,3}(?:,\d{3})+(?!\d|,\d)")
_RE_INT = re.compile(r"(?<!\d)(?<!\d\.)\d+(?!\.?\d)")
_RE_WORD = re.compile(r"[A-Za-z][A-Za-z']*")


def _is_shouted(text: str) -> bool:
    words = [w for w in _RE_WORD.findall(text) if len(w) >= 2]
    caps = [w for w in words if w.isupper()]
    return len(caps) >= 3 and len(caps) >= 0.6 * len(words)


def _month_number(name: str) -> int:
    return MONTHS.index(_MONTH_BY_PREFIX[name[:3].lower()]) + 1


def _sub_phone(m: re.Match[str]) -> str:
    area = m.group(1) or m.group(2)
    return ", ".join(_digits(g) for g in (area, m.group(3), m.group(4)))


def _sub_iso_date(m: re.Match[str]) -> str:
    out = _date(int(m.group(2)), int(m.group(3)), int(m.group(1)))
    return m.group(0) if out is None else out


def _sub_us_date(m: re.Match[str]) -> str:
    year = int(m.group(3)) if m.group(3) else None
    out = _date(int(m.group(1)), int(m.group(2)), year)
    return m.group(0) if out is None else out


def _sub_month_day(m: re.Match[str]) -> str:
    year = int(m.group("year")) if m.group("year") else None
    out = _date(_month_number(m.group("month")), int(m.group("day")), year)
    return m.group(0) if out is None else out


def _sub_day_month(m: re.Match[str]) -> str:
    day = int(m.group("day"))
    if not 1 <= day <= 31:
        return m.group(0)
    return f"the {ordinal(day)} of {MONTHS[_month_number(m.group('month')) - 1]}"


def _sub_time(m: re.Match[str]) -> str:
    hour, minute = int(m.group("h")), int(m.group("m"))
    if hour > 23 or minute > 59:
        return m.group(0)
    return _clock(hour, minute, m.group("ampm"))


def _sub_hour_ampm(m: re.Match[str]) -> str:
    hour = int(m.group("h"))
    if not 1 <= hour <= 12:
        return m.group(0)
    return _clock(hour, 0, m.group("ampm"))


def _sub_money(m: re.Match[str]) -> str:
    return _money(m.group("amt"), m.group("cents"), _CURRENCIES[m.group("cur")])


def _sub_percent(m: re.Match[str]) -> str:
    return f"{_number(m.group(1))} percent"


def _sub_caps(m: re.Match[str]) -> str:
    tok = m.group(0)
    return _WORD_CAPS.get(tok, spell(tok))


def _sub_decimal(m: re.Match[str]) -> str:
    return _number(m.group(0))


def _integer(s: str) -> str:
    if (len(s) > 1 and s.startswith("0")) or len(s) >= 6:
        return _digits(s)
    return cardinal(int(s))


def _number(s: str) -> str:
    if "." in s:
        whole, frac = s.split(".", 1)
        return f"{_integer(whole)} point {_digits(frac)}"
    return _integer(s)


def spoken_form(text: str) -> str:
    """Rewrite written text the way a caller would say it (see the module docstring)."""
    shouted = _is_shouted(text)
    s = text.replace("&", " and ")
    s = re.sub(r"#\s?(?=\d)", "number ", s)
    s = _RE_PHONE.sub(_sub_phone, s)
    s = _RE_ISO_DATE.sub(_sub_iso_date, s)
    s = _RE_US_DATE.sub(_sub_us_date, s)
    s = _RE_MONTH_DAY.sub(_sub_month_day, s)
    s = _RE_DAY_MONTH.sub(_sub_day_month, s)
    s = _RE_TIME.sub(_sub_time, s)
    s = _RE_HOUR_AMPM.sub(_sub_hour_ampm, s)
    s = _RE_MONEY.sub(_sub_money, s)
    s = _RE_PERCENT.sub(_sub_percent, s)
    s = _RE_ORDINAL.sub(lambda m: ordinal(int(m.group(1))), s)
    s = _RE_CODE.sub(lambda m: spell(m.group(0)), s)
    if not shouted:
        s = _RE_CAPS.sub(_sub_caps, s)
    s = _RE_DECIMAL.sub(_sub_decimal, s)
    s = _RE_GROUPED_INT.sub(lambda m: cardinal(int(m.group(0).replace(",", ""))), s)
    s = _RE_INT.sub(lambda m: _integer(m.group(0)), s)
    return re.sub(r"[ \t]+", " ", s).strip()


_WER_ALIASES = {"ok": "okay", "alright": "all right"}


def normalize_for_wer(text: str) -> list[str]:
    """Tokens for WER: spoken form, lowercase, hyphens split, punctuation dropped."""
    s = spoken_form(text).lower()
    s = re.sub(r"[-_/]", " ", s)
    s = re.sub(r"[^\w\s']", " ", s)
    out: list[str] = []
    for tok in s.split():
        tok = tok.strip("'")
        if tok:
            out.extend(_WER_ALIASES.get(tok, tok).split())
    return out


def word_edit_distance(a: list[str], b: list[str]) -> int:
    """Word-level Levenshtein distance."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word Levenshtein distance / reference length, after normalization.

    An empty reference gives 0.0 for an empty hypothesis and 1.0 otherwise.
    """
    ref = normalize_for_wer(reference)
    hyp = normalize_for_wer(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return word_edit_distance(ref, hyp) / len(ref)
