"""The APIs the front doors speak, translated to and from the gateway's one internal shape
(OpenAI chat completions): Anthropic Messages (:mod:`.anthropic`), OpenAI Responses
(:mod:`.responses`), legacy completions (:mod:`.completions`) and embeddings
(:mod:`.embeddings`).

Pure functions and small stateful stream translators over dicts: no I/O, no framework.
A door validates its body, calls ``to_chat`` here, hands the result to the gateway, and
renders the gateway's chat answer (or chunk stream) back with ``from_chat`` / a stream
translator. Translation errors are :class:`~tiergate.errors.InvalidRequest` (400) naming the
offending field.
"""
