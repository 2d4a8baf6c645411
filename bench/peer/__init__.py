"""How does immortus's status route compare with celery-progress's? ``python -m bench.peer``.

One Django project (:mod:`~bench.peer.project`) serves both, a real Celery worker runs its tasks
(:mod:`~bench.peer.seed`), gunicorn serves it (:mod:`~bench.peer.deployment`) and wrk loads both
routes (:mod:`~bench.peer.measure`).
"""
