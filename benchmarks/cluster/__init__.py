"""sessionguard on several app hosts: `make bench-cluster` (`python -m benchmarks.cluster`).

Each host is a network namespace on this machine (`tests.hosts`), running the app of
`app.py` on gunicorn or uvicorn (`fleet.py`) against a Redis Cluster or a PostgreSQL the
hosts share. `scenarios.py` spreads the same-session burst over the hosts and cuts one
host off from the store; `run.py` runs both and writes `cluster.json` and `cluster.png`.
`tests/integration/test_hosts.py` runs the same scenarios as a test.
"""
