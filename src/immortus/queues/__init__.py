"""Queue integrations: one module per queue, each imported only when used.

Each module holds what its queue needs: the hooks that turn the queue's own events (signals,
middleware, callbacks) into immortus's lifecycle events, a one-line ``install``, and, where the
queue keeps state of its own, a backend-native strategy built on
:class:`~immortus.queues.native.QueueStrategy`. Importing :mod:`immortus.queues` imports no
queue library.

==================  ===========================  ============================================
module              extra                        strategy inferred for its jobs
==================  ===========================  ============================================
``celery``          ``immortus[celery]``         ``CeleryStrategy``: the store, then the
                                                 result backend
``rq``              ``immortus[rq]``             ``RQStrategy``: the store, then the job hash
``huey``            ``immortus[huey]``           the store strategy (Huey keeps no status)
``dramatiq``        ``immortus[dramatiq]``       the store strategy (Dramatiq keeps none)
``django_tasks``    ``immortus[django]``         ``DjangoTaskStrategy``: the store, then the
                                                 backend's ``get_result``
``delayed_job``     ``immortus[sql]``            ``DelayedJobStrategy``: the ``delayed_jobs``
                                                 table (the seed's strategy)
``sidekiq``         ``immortus[redis]``          ``SidekiqStrategy``: Sidekiq's Redis keys
==================  ===========================  ============================================
"""
