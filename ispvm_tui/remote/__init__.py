"""Remote collectors: polls made at a PoP, carried to the central engine over NATS JetStream.

``codec`` (PollResult <-> bytes), ``buffer`` (the collector's local store-and-forward file),
``link`` (connecting to NATS), ``collector`` (the PoP side), ``centre`` (the engine side).
Only ``link`` and its callers import nats, and only when ``[remote]`` is configured: the
single-host mode never loads it.
"""
