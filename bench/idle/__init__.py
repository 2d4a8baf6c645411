"""What do idle web processes cost their store, with and without push (``python -m bench.idle``)."""

from typing import Final

#: The environment variable naming the store URL each web process (:mod:`bench.idle.app`) opens.
STORE_VARIABLE: Final = "IMMORTUS_BENCH_STORE"
#: The job class every benchmark job is tracked as.
JOB_CLASS: Final = "bench.idle"
