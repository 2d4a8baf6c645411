"""immortus's benchmarks: ``make bench`` (``python -m bench.all``) runs every standing one.

Each package answers one question, and runs on its own with ``python -m``:

- :mod:`bench.stores`: how do the stores scale, and how fast is a lookup? (``bench.stores.scaling``,
  ``bench.stores.lookup``)
- :mod:`bench.verify`: how many verify requests a second does each framework adapter serve?
- :mod:`bench.push`: what do streamed updates cost the server, next to polling?
- :mod:`bench.load`: does the ASGI adapter hold 1 000 pollers and 200 streams?
- :mod:`bench.overhead`: what does tracking cost each queue's worker?
- :mod:`bench.peer`: how does immortus's status route compare with celery-progress's?
- :mod:`bench.rails`: how fast are the lookups in the Ruby queues' own tables?
- :mod:`bench.studies`: one-off comparisons, not part of ``make bench``.

:mod:`bench.common` and :mod:`bench.results` serve them all; the servers and workers they start
come from :mod:`devservices`, the package the tests use too.
"""
