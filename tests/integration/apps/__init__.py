"""Tiny apps and helper processes for the torture suite.

Servers load them as `apps.wsgi_app:create_app()` / `apps.asgi_app:create_app` with
`tests/integration` on `sys.path`, and the child processes run as `python -m apps.client`
and `python -m apps.writer` from that directory, so inside the package only relative
imports are used. The tests import them as `.apps`.
"""
