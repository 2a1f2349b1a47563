-- depends: 0008.event_envelopes

-- The traffic monitor's state (issue 16): the latest of Trunk Recorder's status messages
-- (its MQTT status plugin: rates, recorders, calls_active) per instance, and a short
-- decode-rate history. State only: how messages are validated and applied, the events
-- they emit and the views over these tables live in sql/ (sql/10_internal/traffic_state.sql).

create table data.traffic_feeds (
    instance_id text not null,
    message_type text not null,
    reported_at timestamptz not null,
    applied_digests text[] not null default '{}',
    received_at timestamptz not null default now(),
    primary key (instance_id, message_type),
    constraint traffic_feeds_instance_id_length check (length(instance_id) between 1 and 200),
    constraint traffic_feeds_message_type check (
        message_type in ('rates', 'recorders', 'calls_active')
    )
);

comment on table data.traffic_feeds is
'The clock of each Trunk Recorder feed: per instance and message type, the timestamp of the newest message applied, the digests of the messages applied with that timestamp (so a redelivered one is recognised), and when it was received. A message older than reported_at, or already applied, changes nothing.';
comment on column data.traffic_feeds.reported_at is 'The newest applied message''s timestamp (Trunk Recorder''s clock).';
comment on column data.traffic_feeds.applied_digests is 'The fingerprint (jsonb_hash_extended) of each message applied with timestamp = reported_at.';
comment on column data.traffic_feeds.received_at is 'When the newest message of this type was received (the database''s clock): the feed''s liveness.';

create table data.traffic_sites (
    instance_id text not null,
    sys_num integer not null,
    sys_name text not null,
    decoderate double precision not null,
    decode_rate_pct double precision not null,
    interval_s double precision,
    control_channel_hz bigint,
    status text not null,
    -- The site as the summary lists it and its system.site.decode_rate.updated event
    -- carries it: built once, when written, so the two always agree.
    site jsonb not null,
    reported_at timestamptz not null,
    received_at timestamptz not null default now(),
    primary key (instance_id, sys_num),
    constraint traffic_sites_site check (jsonb_typeof(site) = 'object')
);

comment on table data.traffic_sites is
'The latest decode rate of each site (Trunk Recorder system) per instance, from rates messages: decoderate in control-channel messages per second, decode_rate_pct = decoderate / emberlog.max_decoderate x 100, its status and the site''s JSON as of when written.';

create table data.traffic_decode_history (
    instance_id text not null,
    sys_num integer not null,
    reported_at timestamptz not null,
    sys_name text not null,
    decode_rate_pct double precision not null,
    primary key (instance_id, sys_num, reported_at)
);

-- Pruning and reading an instance's history by time.
create index traffic_decode_history_instance_time on data.traffic_decode_history (
    instance_id, reported_at
);

comment on table data.traffic_decode_history is
'Recent decode rates per site, one row per rates message; rows older than emberlog.decode_history_retention (default 1 hour) are deleted as new ones are written.';

create table data.traffic_recorders (
    instance_id text primary key,
    total integer not null,
    recording integer not null,
    idle integer not null,
    available integer not null,
    recorders jsonb not null,
    reported_at timestamptz not null,
    received_at timestamptz not null default now(),
    constraint traffic_recorders_list check (jsonb_typeof(recorders) = 'array')
);

comment on table data.traffic_recorders is
'The latest recorders message per instance: counts by rec_state_type (RECORDING, IDLE, AVAILABLE) and the recorders as sent.';

create table data.traffic_calls (
    instance_id text not null,
    call_id text not null,
    sys_num integer,
    sys_name text,
    started_at timestamptz,
    first_seen_at timestamptz not null,
    entry jsonb not null,
    primary key (instance_id, call_id),
    constraint traffic_calls_entry check (jsonb_typeof(entry) = 'object')
);

comment on table data.traffic_calls is
'The calls on the air now per instance: the latest calls_active snapshot, one row per call (entry: its entry as sent, values typed). A call absent from the next snapshot is deleted and its traffic.call.ended event recorded in the same transaction.';

-- Resuming a stream from an envelope's event_id (api.event_position) finds its event
-- by (stream, ref_id): with decode-rate events every few seconds per site the log grows
-- fast, and a reconnecting client must not scan it.
create index events_stream_ref on data.events (stream, ref_id);

-- Rewritten every second or so, a row at a time: room on each page for the new version
-- (HOT updates, pruned as the page is read), and vacuumed by the number of dead rows,
-- not by a share of a table that never grows. The event queue, filled and emptied at
-- the same pace, likewise.
alter table data.traffic_feeds set (
    fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000
);
alter table data.traffic_sites set (
    fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000
);
alter table data.traffic_recorders set (
    fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000
);
alter table data.traffic_calls set (
    fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000
);
alter table data.event_queue set (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000
);
