"""`softprompt serve`: one frozen base model, many prompt folders, one HTTP API.

app.py (`create_app`: state, middleware, routers), routes/ (the endpoints, one
module per group), state.py (ServeState, the endpoints' one dependency),
operations.py (the kinds of model work), batcher.py (operations -> batches on
a worker thread), dispatch.py (an operation for one HTTP request: errors,
clients that leave), checks.py (prompt names and limits), errors.py (the JSON
errors and their codes), guards.py and hosts.py (refusals before the body is
read), observe.py and metrics.py (Prometheus text), registry.py (prompt
folders <-> predictor), schemas.py (request/response bodies), protocol.py
(header/body timeouts and connection cap under uvicorn), server.py (uvicorn
in the foreground or a thread), config.py (ServeSettings).
"""
