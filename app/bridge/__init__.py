"""``emberlog-api mqtt-bridge``: Trunk Recorder's MQTT status plugin into PostgreSQL.

A small process of its own: it subscribes to ``{MQTT_TOPIC_PREFIX}/rates``, ``/recorders``
and ``/calls_active`` (source.py), hands what it received, in order and in batches, to
``api.ingest_trunk_recorder`` (sink.py), which checks and applies each message and
records its events in one transaction, and acknowledges each message to the broker only
once that transaction committed (runner.py). Its health and metrics: service.py.
"""
