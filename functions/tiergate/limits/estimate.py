"""Sizing a reservation so that what a request can spend stays inside it.

Admission reserves ``prompt x input price + answer x output price``. Both factors are
made worst cases:

* **The prompt** is our estimate (:mod:`tiergate.tokens`, ~4 characters a token), not the
  provider's tokenizer: it is reserved with a margin (``budgets.prompt_margin``, 25 % plus
  16 tokens by default) for the estimate's error.
* **The answer** is capped, upstream, at what the reservation covers: ``max_tokens`` is
  set (or lowered) on the body sent to each deployment so that its prompt cost plus its
  longest answer fit the reservation -- also for a pricier fallback deployment, whose
  answer is capped shorter. A deployment whose prompt alone would not fit is skipped.

So recorded spend stays within every limit as long as the provider counts the prompt
within the margin of our estimate and honours ``max_tokens``; a provider that reports
more is still charged what it reports (the ledger never under-records), and the excess is
logged.
"""

from __future__ import annotations

import math
from typing import Any

from tiergate.config.catalog import ModelSpec

#: The smallest answer worth sending a request for; below it the deployment is skipped.
MIN_ANSWER_TOKENS = 16


def reserve_prompt(prompt_tokens: int, margin: float, margin_tokens: int) -> int:
    """Prompt tokens to reserve for an estimate of ``prompt_tokens``."""
    return math.ceil(prompt_tokens * (1.0 + margin)) + margin_tokens


def affordable_output(spec: ModelSpec, reserved_usd: float, prompt_tokens: int) -> int | None:
    """The longest answer ``spec`` can give within ``reserved_usd`` after a prompt of
    ``prompt_tokens``; None when its output is free (no cap needed)."""
    per_token = spec.cost_usd(0, 1_000_000) / 1_000_000
    if per_token <= 0:
        return None
    left = reserved_usd - spec.cost_usd(prompt_tokens, 0)
    return max(0, math.floor(left / per_token + 1e-6))  # (float error must not cost a token)


def cap_output(body: dict[str, Any], cap: int | None, provider_max: int | None) -> dict[str, Any]:
    """``body`` with its answer limited to ``cap`` tokens (the same dict when nothing
    changes: the common case costs no copy). ``max_completion_tokens`` is capped when the
    client used it, else ``max_tokens``; with neither, ``max_tokens`` is added only when
    the deployment's own limit would not already keep the answer within ``cap``."""
    if cap is None:
        return body
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    asked = body.get(key)
    if isinstance(asked, int) and not isinstance(asked, bool):
        return body if asked <= cap else {**body, key: cap}
    if provider_max is not None and provider_max <= cap:
        return body
    return {**body, key: cap}
