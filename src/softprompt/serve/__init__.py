"""`softprompt serve`: one frozen base model, many prompt folders, one HTTP API.

registry.py (prompt folders <-> predictor), batcher.py (requests -> batches on a
worker thread), metrics.py (Prometheus text), schemas.py (request/response
bodies), app.py (`create_app`), server.py (uvicorn in a thread, for tests and
benchmarks), config.py (ServeSettings).
"""
