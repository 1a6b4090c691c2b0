"""The coordinator's domain, one module per concern, over `access`:

- access: domain errors, role and membership checks, the shared context and
  `guarded`, which refuses and audits every failed call in one place;
- projects, uploads, runs, schedules, reviews (flags, outcomes, rule
  changes), audit_reads: what each call does, returning typed results;
- coordinator: the facade the server holds, one service per concern.

The domain knows neither protobuf nor table expressions: the servicer maps its
results to the wire, `server/queries.py` holds its reads and writes."""
