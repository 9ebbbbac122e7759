"""What each model can take and what it costs: context windows, output reserves, prices.

Pure values. The runtime looks a model up by the name it sends (``ModelCatalog.limits``);
unknown names get the catalogue's default, so a model nobody configured still has a
window (a conservative one) and an unknown price (``None``, never 0).

The size of a request before it is sent is *estimated* (:func:`estimate_tokens`):
the provider reports the exact ``prompt_tokens`` of each call afterwards, and the
runtime adds an estimate only for what was appended since (see ``_context.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from attrs import field, frozen

# Chars per token of English prose and code under the cl100k/o200k tokenizers is
# 3.5 to 4.5; 4 errs low on code-heavy text (more tokens than estimated), so the
# estimate adds a per-message overhead and the compaction threshold leaves room.
CHARS_PER_TOKEN = 4
MAX_MODEL_NAME = 200  # characters: longer is not a model name, whatever the provider
MESSAGE_OVERHEAD = 4  # role, separators: what chat templates add per message


def estimate_tokens(text: str) -> int:
    """Tokens of *text*, estimated from its length (see :data:`CHARS_PER_TOKEN`)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@frozen
class ModelLimits:
    """One model's context window, output reserve and prices.

    Prices are US dollars per million tokens; ``None`` means unpriced (cost
    ``None``). ``cached_input_price`` defaults to ``input_price`` when unset.
    """

    context_window: int = 128_000
    max_output_tokens: int = 4_096
    input_price: float | None = None
    output_price: float | None = None
    cached_input_price: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.context_window < 1 or self.max_output_tokens < 1:
            raise ValueError("context_window and max_output_tokens must be at least 1")
        if self.max_output_tokens >= self.context_window:
            raise ValueError(
                f"max_output_tokens ({self.max_output_tokens}) must be smaller than "
                f"context_window ({self.context_window})"
            )
        for price in (self.input_price, self.output_price, self.cached_input_price):
            if price is not None and price < 0:
                raise ValueError("prices must not be negative")

    @property
    def input_budget(self) -> int:
        """Tokens a request may use: the window less the output reserve."""
        return self.context_window - self.max_output_tokens

    def cost(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
    ) -> float | None:
        """The price of one call in US dollars, or ``None`` if the model is unpriced."""
        if self.input_price is None or self.output_price is None:
            return None
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_price = (
            self.input_price if self.cached_input_price is None else self.cached_input_price
        )
        dollars = (
            (prompt_tokens - cached) * self.input_price
            + cached * cached_price
            + completion_tokens * self.output_price
        )
        return round(dollars / 1_000_000, 10)


# The scripted model declares a small window so compaction runs offline too.
SCRIPTED_LIMITS = ModelLimits(context_window=4_096, max_output_tokens=512)


@frozen
class ModelCatalog:
    """Limits by model name, with a default for models nobody configured."""

    models: Mapping[str, ModelLimits] = field(factory=lambda: {"scripted": SCRIPTED_LIMITS})
    default: ModelLimits = ModelLimits()

    def limits(self, model: str) -> ModelLimits:
        return self.models.get(model, self.default)
