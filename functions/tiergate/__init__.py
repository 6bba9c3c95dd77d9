"""tiergate: an OpenAI-compatible LLM gateway with tiered routing, cascades and budgets."""

__version__ = "0.1.0"
