"""What does tracking cost a queue's worker? ``python -m bench.overhead``.

Each queue's jobs and driver live in ``<queue>_app.py``, which its workers import;
:mod:`~bench.overhead.worker` is what they share with the benchmark. The benchmark runs the
batches (:mod:`~bench.overhead.runner`) and, beside each, the floor of the least write that keeps
tracking's promise (:mod:`~bench.overhead.bare`); it keeps their figures
(:mod:`~bench.overhead.figures`) and reports them (:mod:`~bench.overhead.report`).
``python -m bench.overhead.profile`` (:mod:`~bench.overhead.profile`) shows, in one process,
where immortus's µs above that floor go.
"""
