"""What the two Rails readers (Delayed::Job, Sidekiq) share.

Both queues delete a job that ended well, so a reader cannot tell "done" from "never existed"
by looking at the queue alone. These modules hold the rules that keep the readers honest:

- :mod:`~immortus.queues.rails.notes`: where a reader last saw each job, kept per process
  (bounded) and, through a journal, for every web process;
- :mod:`~immortus.queues.rails.journal`: the Redis keys that share those notes, and the events
  a Rails job writes with the Ruby module of the docs (the exact mode);
- :mod:`~immortus.queues.rails.answers`: the answer for a job the queue no longer holds;
- :mod:`~immortus.queues.rails.reader`: the one answering path both strategies share;
- :mod:`~immortus.queues.rails.sidekiq_lua`: the scripts the Sidekiq reader runs in Redis.
"""
