"""How many verify requests a second does each adapter serve? ``python -m bench.verify``.

Starlette under uvicorn, Flask and Django under gunicorn (:mod:`~bench.verify.servers`, each
app in ``*_app.py``), loaded by wrk (:mod:`~bench.verify.load`).
"""
