"""Fine-tuning as a service: OpenAI's files and fine-tuning jobs API over a durable job queue.

``store`` keeps files, jobs, events and checkpoints (SQLite under TUNELAB_HOME by default);
``files`` streams uploads to disk and validates them; ``spec`` turns a job request into a
training config; ``routes`` are the HTTP routes the server mounts; ``worker`` claims jobs and
runs them through ``runner``, which trains in a child process (``child``) so that a cancel is
a signal and a dead worker never leaves a half-owned job behind.
"""
