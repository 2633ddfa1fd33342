"""The HTTP service on Ray Serve: judge and policy deployments behind a FastAPI ingress.

`app` builds and starts the Serve application; `routes` holds the ingress's routes and
`guard` the ASGI guard in front of them (auth, body limit, 503 for any failure);
`deployments` holds the model replicas; `schemas`, `auth` and `metrics` hold the request
limits, the token check and the counters.
"""
