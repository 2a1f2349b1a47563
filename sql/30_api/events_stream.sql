-- The generic live stream of canonical events (issue 15, item 5; DESIGN §5, §5b): every
-- envelope in the order the stream log published it, filtered in SQL, resumable by
-- position or by event_id. Served as GET /api/v1/sse (the @sse tag below): its
-- arguments after (after_id, max_events) are the route's query filters.

create function api.event_stream(
    after_id bigint,
    max_events integer default 100,
    domain text default null,
    event_type text[] default null,
    system text default null,
    site text default null
)
returns table (
    id bigint, event text, data json,
    match_domain text, match_event_type text, match_system text, match_site text
)
language plpgsql
volatile
-- security definer: reads the event log and the envelopes in data, which no web role may touch.
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    types text[] := nullif(array(
        select distinct t from unnest(event_stream.event_type) as t where t is not null
    ), '{}');
    batch integer := greatest(least(event_stream.max_events, 1000), 1);
begin
    -- Number what writers queued (as api.incident_events does); its own statement, so
    -- the read below takes a later snapshot.
    perform internal.publish_events();
    return query
    with raw as (
        -- Both streams after after_id: the envelopes stream, and the incidents stream
        -- (an incident's dispatch.incident.created envelope is not queued twice: its
        -- incident's event stands for it). The marker or reset row comes once.
        select r.id, r.ref_id, r.event, r.data, 'envelopes' as stream
        from internal.read_events('envelopes', event_stream.after_id, batch) as r
        union all
        select r.id, r.ref_id, r.event, r.data, 'incidents' as stream
        from internal.read_events('incidents', event_stream.after_id, batch) as r
        where r.ref_id is not null
    ),

    batch_rows as (
        -- One batch across both streams (a reset row, if any, comes first: its id is the
        -- newest id, every event after it is newer).
        select r.*
        from raw as r
        order by r.id, r.ref_id nulls first
        limit batch + (select count(*) from raw as x where x.ref_id is null)
    ),

    described as (
        select
            r.id,
            r.ref_id,
            r.event as marker,
            r.data as marker_data,
            a.env as envelope,
            (a.env).event_type as type_of,
            (a.env).domain as domain_of,
            (a.env).source_system as system_of,
            (a.env).payload ->> 'site' as site_of
        from batch_rows as r
        left join data.incidents as i on r.stream = 'incidents' and r.ref_id = i.id
        left join lateral (
            select v as env
            from api.events as v
            where r.stream = 'envelopes' and v.position = r.ref_id
            union all
            (
                -- The incident's own envelope (internal.tg_incidents__record_event):
                -- found by the type's index (event_type, occurred_at).
                select v as env
                from api.events as v
                where
                    r.stream = 'incidents'
                    and v.event_type = 'dispatch.incident.created'
                    and v.occurred_at = i.dispatched_at
                    and v.source_module = 'emberlog-api'
                    and v.payload ->> 'incident_id' = i.id::text
                order by v.position
                limit 1
            )
        ) as a on true
    ),

    matching as (
        select
            w.*,
            -- (not "envelope is not null": a row with any null field is not "not null")
            w.type_of is not null
            and (event_stream.domain is null or w.domain_of = event_stream.domain)
            and (types is null or w.type_of = any(types))
            and (event_stream.system is null or w.system_of = event_stream.system)
            and (event_stream.site is null or w.site_of = event_stream.site) as shown
        from described as w
    )

    select m.id, m.marker, m.marker_data, null::text, null::text, null::text, null::text
    from matching as m
    where m.ref_id is null  -- the marker (after_id null) or the reset row
    union all
    select m.id, m.type_of, api.event_json(m.envelope), m.domain_of, m.type_of, m.system_of, m.site_of
    from matching as m
    where m.ref_id is not null and m.shown
    union all
    -- Events filtered out (or whose envelope retention already deleted) are not sent,
    -- but the position moves on: one position-only row at the end of the batch when
    -- its last event is not shown.
    select m.id, null::text, null::json, null::text, null::text, null::text, null::text
    from matching as m
    where
        m.ref_id is not null and not m.shown
        and m.id = (select max(x.id) from matching as x where x.ref_id is not null)
    order by 1;
end
$$;

-- The channel in the @sse tag is the one the triggers ring (internal.events_channel()),
-- written into the comment as for api.incident_events (sql/30_api/incidents.sql).
do $comment$
begin
    execute pg_catalog.format(
        'comment on function api.event_stream(bigint, integer, text, text[], text, text) is %L',
        '@sse /api/v1/sse channel=' || internal.events_channel()
        || ' position=api.event_position' || E'\n'
        || '@param domain {"maxLength": 200}' || E'\n'
        || '@param event_type {"maxItems": 20, "items": {"type": "string", "maxLength": 200}}'
        || E'\n'
        || '@param system {"maxLength": 200}' || E'\n'
        || '@param site {"maxLength": 200}' || E'\n'
        || 'The generic live stream of canonical events: every envelope (ingested ones and'
        || ' each incident''s dispatch.incident.created), event = its event_type, data ='
        || ' the envelope. Filters domain, event_type (repeat the key: any of them), system'
        || ' (source.system), site (payload.site); AND across keys. Resume with'
        || ' Last-Event-ID or last_event_id: a position (the id: of a frame) or an'
        || ' envelope''s event_id (api.event_position); unknown: a reset event.'
        || E'\n\n'
        || 'A stream function: rows after after_id in id order (the position of'
        || ' data.events, shared with the incidents stream), at most max_events events'
        || ' (1 to 1000) read per call. Each event row: id, event, data, then its'
        || ' filterable attributes match_domain, match_event_type, match_system,'
        || ' match_site (for matching live events per client; null on other rows).'
        || ' Events filtered out are not returned, but when the batch''s last event is'
        || ' filtered out a position-only row (event null) carries its id. after_id null:'
        || ' one marker row with the newest id. after_id older than retention or unknown:'
        || ' a reset row, then events after the newest id.'
    );
end
$comment$;

create function api.event_position(event_id uuid)
returns bigint
language sql
stable
-- security definer: reads the event log and the envelopes in data.
security definer
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(
        (
            select e.id
            from data.event_envelopes as v
            inner join data.events as e on e.stream = 'envelopes' and v.position = e.ref_id
            where v.event_id = event_position.event_id
        ),
        (
            -- An incident's own envelope: its incident's event of the incidents stream.
            select e.id
            from data.event_envelopes as v
            inner join data.events as e
                on e.stream = 'incidents' and e.ref_id::text = v.payload ->> 'incident_id'
            inner join data.incidents as i on e.ref_id = i.id and v.occurred_at = i.dispatched_at
            where
                v.event_id = event_position.event_id
                and v.event_type = 'dispatch.incident.created'
                and v.source_module = 'emberlog-api'
        )
    )
$$;

comment on function api.event_position(uuid) is
'The stream position (data.events.id, as api.event_stream''s ids) of the envelope with this event_id, for resuming with last_event_id=<uuid>: events after it follow. Null when no such envelope is stored, or its event was pruned or not yet published (a client then gets the stream''s reset).';
