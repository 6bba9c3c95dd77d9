"""tiergate on a device: a local llama.cpp model first, the cloud gateway when needed.

Only :mod:`tiergate_edge.llama_runtime` imports ``llama_cpp``; everything else here is
plain policy, connectivity and SQLite durability over the core's contracts.
"""
