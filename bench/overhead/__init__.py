"""What does tracking cost a queue's worker? ``python -m bench.overhead``.

Each queue's jobs and driver live in ``<queue>_app.py``, which its workers import;
:mod:`~bench.overhead.worker` is what they share with the benchmark. The benchmark runs the
batches (:mod:`~bench.overhead.runner`), keeps their figures (:mod:`~bench.overhead.figures`)
and reports them (:mod:`~bench.overhead.report`).
"""
