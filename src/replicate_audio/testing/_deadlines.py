"""The simulator's prediction deadlines: the ``Cancel-After`` header of a create."""

from __future__ import annotations

import re

from ._predictions import Problem

#: "The minimum allowed duration is 5 seconds." (HTTP reference, ``Cancel-After``.)
MIN_DEADLINE = 5.0
_NUMBER = r"\d+(?:\.\d+)?"
# "s", "m" and "h" suffixes, combined ("1h30m45s"), or a plain number of seconds ("30").
_DURATION = re.compile(rf"({_NUMBER})|(?:({_NUMBER})h)?(?:({_NUMBER})m)?(?:({_NUMBER})s)?")


def requested_deadline(headers: dict[str, str], *, minimum: float = MIN_DEADLINE) -> float | None:
    """The seconds from creation a create's ``Cancel-After`` header allows, or ``None``.

    Raises:
        Problem: 422 for a value of no known form or one shorter than *minimum* (Replicate
            documents no answer for either: the simulator's choice).

    Example:
        >>> requested_deadline({"Cancel-After": "1h30m45s"})
        5445.0
        >>> requested_deadline({"cancel-after": "30"})
        30.0
        >>> requested_deadline({}) is None
        True
    """
    value = next((v for k, v in headers.items() if k.lower() == "cancel-after"), None)
    if value is None:
        return None
    match = _DURATION.fullmatch(value.strip())
    if match is None or not any(match.groups()):
        detail = f"- Cancel-After: {value!r} is not a duration such as 30, 30s, 5m or 1h30m45s"
        raise Problem(422, "Invalid Cancel-After header", detail)
    plain, hours, minutes, seconds = (float(part or 0) for part in match.groups())
    total = plain + hours * 3600 + minutes * 60 + seconds
    if total < minimum:
        detail = f"- Cancel-After: {value!r} is shorter than the minimum of {minimum:g} seconds"
        raise Problem(422, "Invalid Cancel-After header", detail)
    return total
