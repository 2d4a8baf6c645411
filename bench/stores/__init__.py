"""How do the stores scale, and how fast is a lookup? SQLite, Redis and PostgreSQL, seeded alike.

``python -m bench.stores.scaling`` times every store operation at growing sizes;
``python -m bench.stores.lookup`` times one job's lookup, a batch and a listing. Both seed the
jobs of :mod:`~bench.stores.dataset` through :mod:`~bench.stores.backends` and time them with
:mod:`~bench.stores.measure`.
"""
