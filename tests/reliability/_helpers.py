"""Constants and small helpers shared by the reliability suites."""

import logging
import re
from typing import Iterable, List

#: Distinctive enough that finding it anywhere is certainly a leak.
SECRET_KEY = "sk-relia-SECRETmiddlePART-0123456789zz"

_RETRY_LINE = re.compile(r"retrying in ([0-9.]+)s")


def recorded_waits(records: Iterable[logging.LogRecord]) -> List[float]:
    """The waits the retry policy announced ("retrying in 1.00s"), in order."""
    return [float(m.group(1)) for r in records if (m := _RETRY_LINE.search(r.getMessage()))]
