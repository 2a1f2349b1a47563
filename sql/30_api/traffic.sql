-- The traffic monitor's views, for psql users and the routes of
-- sql/30_api/traffic_routes.sql. How Trunk Recorder's messages are checked and applied,
-- and the events they record: sql/10_internal/traffic_messages.sql, traffic_state.sql.

-- The columns in the order the summary lists them.
create view api.traffic_sites as
select  -- noqa: ST06
    s.instance_id,
    split_part(s.sys_name, '-', 1) as site_group,
    s.sys_num,
    s.sys_name,
    s.decoderate,
    s.decode_rate_pct,
    s.control_channel_hz::double precision / 1000000 as control_channel_mhz,
    s.interval_s,
    s.status,
    s.reported_at as updated_at,
    s.received_at,
    s.site
from data.traffic_sites as s;

comment on view api.traffic_sites is
'The latest decode rate of each site per Trunk Recorder instance: site_group (sys_name before its first "-"), decoderate (control-channel messages per second), decode_rate_pct (of emberlog.max_decoderate), status (ok >= 90, warn >= 70, else bad), updated_at (the message''s timestamp), received_at, and site: the JSON the summary lists and the decode_rate.updated event carries.';

create view api.traffic_recorders as
select
    r.instance_id,
    r.total,
    r.recording,
    r.idle,
    r.available,
    r.reported_at as updated_at,
    r.received_at,
    r.recorders
from data.traffic_recorders as r;

comment on view api.traffic_recorders is
'The latest recorders message per Trunk Recorder instance: counts by rec_state_type (total, recording, idle, available), updated_at (the message''s timestamp) and the recorders as sent.';

-- The instance, then its clocks, then its state.
create view api.traffic_feeds as
select  -- noqa: ST06
    f.instance_id,
    max(f.received_at) as last_seen_at,
    max(f.reported_at) filter (where f.message_type = 'rates') as rates_at,
    max(f.reported_at) filter (where f.message_type = 'recorders') as recorders_at,
    max(f.reported_at) filter (where f.message_type = 'calls_active') as calls_at,
    extract(epoch from now() - max(f.received_at))::double precision as age_s,
    case
        when now() - max(f.received_at) <= interval '10 seconds' then 'healthy'
        when now() - max(f.received_at) <= interval '30 seconds' then 'degraded'
        else 'stale'
    end as status
from data.traffic_feeds as f
group by f.instance_id;

comment on view api.traffic_feeds is
'Each Trunk Recorder instance''s feed: last_seen_at (when a message was last applied, the database''s clock), the timestamp of the newest rates, recorders and calls_active message, age_s, and status: healthy (seen within 10 s), degraded (within 30 s), else stale.';

-- The columns in the order GET /api/v1/traffic/live-calls sends them.
create view api.traffic_live_calls as
select  -- noqa: ST06
    c.instance_id,
    c.call_id as id,
    c.started_at,
    coalesce(round((c.entry ->> 'elapsed')::numeric)::bigint, 0) as elapsed_s,
    c.sys_num,
    coalesce(c.sys_name, '') as sys_name,
    split_part(coalesce(c.sys_name, ''), '-', 1) as site_group,
    round((c.entry ->> 'talkgroup')::numeric)::bigint as talkgroup_id,
    c.entry ->> 'talkgroup_alpha_tag' as talkgroup,
    c.entry ->> 'talkgroup_description' as description,
    c.entry ->> 'talkgroup_group' as category,
    c.entry ->> 'talkgroup_tag' as tag,
    (c.entry ->> 'freq')::double precision / 1000000 as freq_mhz,
    coalesce((c.entry ->> 'encrypted')::boolean, false) as encrypted,  -- noqa: RF04
    coalesce((c.entry ->> 'emergency')::boolean, false) as emergency,
    coalesce((c.entry ->> 'phase2_tdma')::boolean, (c.entry ->> 'phase2')::boolean, false) as phase2_tdma,
    (c.entry ->> 'tdma_slot')::integer as tdma_slot,
    round((c.entry ->> 'unit')::numeric)::bigint as unit,
    (c.entry ->> 'src_num')::integer as src_num,
    (c.entry ->> 'rec_num')::integer as rec_num,
    (c.entry ->> 'src_num') || '_' || (c.entry ->> 'rec_num') as recorder_id,
    c.first_seen_at,
    c.entry
from data.traffic_calls as c;

comment on view api.traffic_live_calls is
'The calls on the air now per Trunk Recorder instance (its latest calls_active snapshot), with the fields GET /api/v1/traffic/live-calls sends: talkgroup is the alpha tag, description, category (talkgroup_group) and tag the talkgroup''s; freq_mhz; recorder_id "<src_num>_<rec_num>"; elapsed_s as of the snapshot; entry is the calls_active entry as sent (values typed).';

create view api.traffic_decode_history as
select
    h.instance_id,
    h.sys_num,
    h.sys_name,
    h.reported_at,
    h.decode_rate_pct
from data.traffic_decode_history as h;

comment on view api.traffic_decode_history is
'Recent decode rates per site and Trunk Recorder instance, one row per rates message (reported_at: the message''s timestamp); rows older than emberlog.decode_history_retention (default 1 hour) behind the newest are deleted as new ones arrive.';

create view api.traffic_call_events as
select
    e.position,
    e.event_id,
    e.event_type,
    e.occurred_at,
    e.source_instance as instance_id,
    e.payload ->> 'system' as sys_name,
    e.payload ->> 'site' as site,
    e.payload ->> 'call_id' as call_id,
    e.payload ->> 'trunkgroup_id' as talkgroup_id,
    e.payload ->> 'trunkgroup_label' as talkgroup,
    -- (Any ingest client may send these events: only numbers are read as numbers.)
    case
        when jsonb_typeof(e.payload -> 'frequency') = 'number'
            then (e.payload ->> 'frequency')::double precision
    end as frequency_hz,
    case
        when jsonb_typeof(e.payload -> 'duration_seconds') = 'number'
            then (e.payload ->> 'duration_seconds')::double precision
    end as duration_seconds
from api.events as e
where e.event_type in ('traffic.call.started', 'traffic.call.ended');

comment on view api.traffic_call_events is
'Recent traffic.call.started and traffic.call.ended events (as long as retention keeps them), their payload as columns. Order by occurred_at desc, position desc for newest first.';
