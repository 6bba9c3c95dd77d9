"""The response cache: exact (both homes) and semantic (local and edge homes).

``key`` normalizes and hashes a request; ``policy`` decides whether a request may be
served from and stored to the cache; ``store`` is the exact store's contract, with
``sqlite`` and ``dynamodb`` implementations; ``semantic`` and ``guard`` are the semantic
cache (an embedder and a vector index injected by the home); ``replay`` turns a stored
answer into a stream and a stream into an answer; ``service`` is what the gateway calls.
"""
