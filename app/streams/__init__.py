"""Live streams: the LISTEN connection, one hub (ring) per stream declared in SQL, what
each client is sent (SSE frames, replay, reset), and the caps on streams.
"""
