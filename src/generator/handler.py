"""The load test's handler: consumption itself is the work it measures.

The pipeline counts every key whose handler returned (``metrics:consumed``,
``metrics:consumer:<id>``, and key by key in ``test:consumed`` during a test), atomically with
ending the claim, so the load test's counter needs to do nothing more: it returns at once, and
what the load test measures is the pipeline alone. Any other handler gets the same counting.
"""

from __future__ import annotations

from consumer.handler import ExpiredKey, repeat_safe


@repeat_safe
async def count(event: ExpiredKey) -> None:
    """Accept ``event``: the pipeline's completion step counts it."""
    del event
