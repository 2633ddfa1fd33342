"""The HTTP service on Ray Serve: judge and policy deployments behind a FastAPI ingress.

`anchor_service.serve.app` builds and starts the application; `deployments` holds the model
replicas; `schemas`, `auth` and `metrics` hold the request limits, the token check and the
counters.
"""
