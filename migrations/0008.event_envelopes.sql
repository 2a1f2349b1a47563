-- depends: 0007.event_queue

-- The canonical event log (DESIGN §5b; upstream docs/EVENT_MODEL_v0.2.md §2): one row
-- per event envelope, whoever wrote it (the ingest route, a domain table's trigger).
-- Behaviour (validation messages, the incident trigger, the routes, retention) lives in
-- sql/; the constraints here are the last word on what a row may hold.

create table data.event_envelopes (
    position bigint generated always as identity primary key,  -- noqa: RF04
    event_id uuid not null,
    event_type text not null,
    -- The domain (the first segment of event_type), kept for its index.
    domain text generated always as (split_part(event_type, '.', 1)) stored,  -- noqa: RF04
    schema_version text not null,
    occurred_at timestamptz not null,
    received_at timestamptz not null default now(),
    correlation_id text,
    source_module text not null,
    source_instance text not null,
    source_system text,
    payload jsonb not null,
    constraint event_envelopes_event_id_unique unique (event_id),
    constraint event_envelopes_event_type_format check (
        event_type ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){2,}$' and length(event_type) <= 200
    ),
    constraint event_envelopes_schema_version_format check (
        schema_version ~ '^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$'
        and length(schema_version) <= 64
    ),
    constraint event_envelopes_correlation_id_length check (
        correlation_id is null or length(correlation_id) between 1 and 200
    ),
    constraint event_envelopes_source_module_length check (length(source_module) between 1 and 200),
    constraint event_envelopes_source_instance_length check (length(source_instance) between 1 and 200),
    constraint event_envelopes_source_system_length check (
        source_system is null or length(source_system) between 1 and 200
    ),
    constraint event_envelopes_payload_is_object check (jsonb_typeof(payload) = 'object')
);

comment on table data.event_envelopes is
'Canonical event envelopes (event_id, event_type, schema_version, timestamp, correlation_id, source, payload), idempotent by event_id. Written by api.ingest_events and by domain triggers (internal.tg_incidents__record_event); read through api.events; pruned by internal.prune_events.';
comment on column data.event_envelopes.position is 'Monotonic position, handed out at insert: the order of the log for streams.';
comment on column data.event_envelopes.event_id is 'The envelope''s globally unique id (idempotency key).';
comment on column data.event_envelopes.event_type is 'domain.entity.action (lowercase segments of letters, digits and _; three or more).';
comment on column data.event_envelopes.domain is 'The first segment of event_type (traffic, system, dispatch, ...).';
comment on column data.event_envelopes.schema_version is 'Semantic version of the event type''s payload schema.';
comment on column data.event_envelopes.occurred_at is 'The envelope''s timestamp: when the event happened.';
comment on column data.event_envelopes.received_at is 'When the hub stored it.';
comment on column data.event_envelopes.correlation_id is 'Optional opaque id relating events across domains.';
comment on column data.event_envelopes.source_system is 'The trunked system the event concerns (source.system), when known.';
comment on column data.event_envelopes.payload is 'The event type''s data (a JSON object).';

-- GET /api/v1/events: newest first, alone or by one filter (the time range is a range
-- of the leading column of each).
create index event_envelopes_newest on data.event_envelopes (occurred_at desc, position desc);
create index event_envelopes_type_newest on data.event_envelopes (event_type, occurred_at desc, position desc);
create index event_envelopes_domain_newest on data.event_envelopes (domain, occurred_at desc, position desc);
create index event_envelopes_system_newest on data.event_envelopes (
    source_system, occurred_at desc, position desc
);
-- Retention deletes by when events were stored.
create index event_envelopes_received on data.event_envelopes (received_at);

alter table data.event_log_state add column envelopes_pruned_through bigint not null default 0;

comment on column data.event_log_state.envelopes_pruned_through is
'Every envelope with a position up to this one has been deleted by retention (internal.prune_events).';

-- The trunked system of a channel, where a DBA knows it: dispatch.incident.created
-- events of incidents on that channel carry it as source.system.
create table data.channel_systems (
    channel text primary key,
    system text not null,  -- noqa: RF04
    constraint channel_systems_system_length check (length(system) between 1 and 200)
);

comment on table data.channel_systems is
'Which trunked system (source.system of dispatch.incident.created) an incident''s channel belongs to. Kept by a DBA; see internal.channel_system.';
