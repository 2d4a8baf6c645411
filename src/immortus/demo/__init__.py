"""The demo application: four sample jobs, tracked end to end (``immortus demo``).

- The web demo (the default; :mod:`.server`): a real Huey queue on SQLite with worker threads
  in this process (:mod:`.queue`), the SQLite store, and a Starlette page (:mod:`.web`) that
  starts sample jobs and follows each over Server-Sent Events. ``--smoke`` (:mod:`.smoke`) runs
  every sample through the HTTP API and checks how each ended.
- The terminal demo (``--terminal``; :mod:`.terminal`): the same jobs in a thread pool
  (:mod:`.runner`), followed with live bars on the terminal.

The samples (:mod:`.samples`) are ordinary tracked functions (:mod:`.jobs`) that wait between
their steps with :func:`.pacing.pause`, where whoever runs them can stop them.
"""
