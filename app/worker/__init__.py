"""``emberlog-api worker``: the alert webhooks the database queued, sent.

Matching happens in the database, in the incident's transaction (it queues rows in
data.alert_deliveries and NOTIFYs emberlog_alerts); so do retries, backoff and dead
letters. This process only moves bytes: it claims due deliveries with a lease
(store.py, woken by listen.py), POSTs each, signed as Standard Webhooks 1.0 says
(sender.py; only to allowed addresses: guard.py), and records the results in batches
(recorder.py); runner.py is the loop and the drain, service.py its metrics and port.
Killed at any moment, it loses nothing: an unrecorded attempt is claimed again after
its lease (receivers deduplicate on webhook-id). verify.py is ``verify-webhook``.
"""
