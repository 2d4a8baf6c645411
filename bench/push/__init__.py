"""What do streamed updates cost the server, next to polling? ``python -m bench.push``.

The jobs' progress comes from :mod:`~bench.push.writer`, the clients are
:mod:`~bench.push.watchers`: each runs in a process of its own.
"""
