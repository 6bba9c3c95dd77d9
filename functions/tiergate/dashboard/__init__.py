"""The operators' dashboard (``GET /dashboard``): a hand-written HTML/SVG/JS page in
``static/`` served by the gateway itself (no CDN, no build step, a few tens of KB in the
Lambda package), its sign-in sessions (:mod:`.session`) and the figures of each view
(:mod:`.views`), computed from the same functions as ``/v1/usage`` and ``/v1/budget``."""
