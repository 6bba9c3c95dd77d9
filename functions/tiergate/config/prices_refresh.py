"""Regenerate the price snapshot (``prices.json``) from LiteLLM's cost map.

    python -m tiergate.config.prices_refresh        # with the pinned litellm installed

Keeps, for every ``chat`` and ``embedding`` model, only the fields the catalog uses: prices per 1M input and
output tokens, context window, max output tokens and capabilities; stamped with the
litellm version it came from. Reads the JSON file inside the litellm package (no import
of litellm). Commit the result; the gateway reads it with no litellm installed.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata

from tiergate.config.pricing import SNAPSHOT, from_cost_map_entry, litellm_cost_map_path


def build() -> dict:
    path = litellm_cost_map_path()
    if path is None:
        raise SystemExit("litellm is not installed: pip install 'tiergate[litellm]' (the pinned version)")
    raw = json.loads(path.read_text())
    rows = {}
    for model_id, entry in sorted(raw.items()):
        if not isinstance(entry, dict) or entry.get("mode") not in ("chat", "embedding"):
            continue
        k = from_cost_map_entry(entry)
        if k.input_cost_per_mtok is None and k.output_cost_per_mtok is None and not k.context_window:
            continue
        rows[model_id] = [k.input_cost_per_mtok, k.output_cost_per_mtok, k.context_window, k.max_output_tokens,
                          ",".join(sorted(k.capabilities))]
    return {"source": "litellm model_prices_and_context_window_backup.json",
            "litellm_version": metadata.version("litellm"),
            "columns": ["input_cost_per_mtok", "output_cost_per_mtok", "context_window", "max_output_tokens",
                        "capabilities"],
            "models": rows}


def main() -> int:
    data = build()
    # Compact, one dict: pricing._Snapshot finds a row by searching the text for its key.
    SNAPSHOT.write_text(json.dumps(data, separators=(",", ":"), sort_keys=False) + "\n")
    print(f"wrote {SNAPSHOT} ({len(data['models'])} models, litellm {data['litellm_version']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
