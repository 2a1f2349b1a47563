-- The benchmark's event envelopes: row n is the same envelope on every run (every
-- "random" choice is a hash of n), so the log grows by appending, like seed.sql's
-- incidents. Parameters: %(first)s and %(last)s, the row numbers to add. Triggers are
-- off for the load (session_replication_role = replica, set by the caller): no stream
-- event per seeded envelope.
with
vocab as (
    select
        array[
            'traffic.call.started', 'traffic.call.ended', 'system.site.decode_rate.updated',
            'dispatch.incident.created', 'alert.delivery.sent', 'traffic.unit.affiliated'
        ] as types,
        array['S1', 'S2', 'S3', 'S4', 'S5'] as systems
),

n as (
    select
        g,
        pg_catalog.abs(pg_catalog.hashint8extended(g, 11)) as h1,
        pg_catalog.abs(pg_catalog.hashint8extended(g, 12)) as h2
    from pg_catalog.generate_series(%(first)s::bigint, %(last)s::bigint) as g
)

insert into data.event_envelopes (
    event_id, event_type, schema_version, occurred_at, received_at,
    source_module, source_instance, source_system, payload
)
select
    pg_catalog.md5('bench-event-' || n.g)::uuid as event_id,
    v.types[1 + n.h1 %% pg_catalog.cardinality(v.types)] as event_type,
    '1.0.0' as schema_version,
    timestamptz '2026-11-01 00:00:00+00'
    - (n.h2 %% 2592000000) * interval '1 millisecond' as occurred_at,
    timestamptz '2026-11-01 00:00:00+00' as received_at,
    'bench' as source_module,
    'seed' as source_instance,
    v.systems[1 + (n.h2 / 7) %% pg_catalog.cardinality(v.systems)] as source_system,
    pg_catalog.jsonb_build_object('seed_row', n.g, 'site', 'site-' || n.h1 %% 20) as payload
from n, vocab as v;
