"""``openmart serve``: the monitoring service. openmart's own REST API (``/api/v1``, module
:mod:`openmart.service.rest`), OpenScale's V1 routes (:mod:`openmart.service.openscale`), the
scheduler that runs monitors when due, and the performance monitor's routes — all over the same
Python API the CLI uses. :func:`openmart.service.app.create_app` builds the ASGI app."""
