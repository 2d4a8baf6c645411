"""How fast are lookups in the Ruby queues' own tables (Delayed::Job, Sidekiq)?

Each module times immortus's strategy for one queue against the data the Ruby gem immortus
reads, and runs with ``python -m bench.rails.<module>``.
"""
