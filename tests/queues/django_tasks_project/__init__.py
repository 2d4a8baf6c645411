"""A Django project with tracked tasks, run in subprocesses by ``test_django_tasks.py``.

Django can be set up once per process, and the pytest process belongs to the web adapter's
test project; so this project's processes are the Django side (``side.py``, standing in for
the web app that enqueues and answers status questions) and ``db_worker`` workers.
"""
