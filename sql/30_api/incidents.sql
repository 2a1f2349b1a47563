-- Incidents: the views psql users read, and the functions the HTTP routes call.

create view api.incidents as
select
    i.id,
    i.dispatched_at,
    i.special_call,
    i.units,
    i.channel,
    i.incident_type,
    i.address,
    i.source_audio,
    i.original_text,
    i.transcript,
    i.parsed,
    i.created_at,
    i.search_vector
from data.incidents as i;

comment on view api.incidents is
'Every incident. Order by dispatched_at desc, id desc for newest first. search_vector is the weighted full-text document (type A, address B, transcript C).';

create view api.recent_incidents as
-- the same columns as api.incidents: both are re-created together on every deploy
select i.*  -- noqa: AM04
from api.incidents as i
where i.dispatched_at >= now() - interval '30 minutes';

comment on view api.recent_incidents is 'Incidents dispatched in the last 30 minutes.';

create function api.iso8601(ts timestamptz)
returns text
language sql
-- stable, not immutable: to_char is stable (its output may follow lc_time settings).
stable
parallel safe
return to_char(ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');

comment on function api.iso8601(timestamptz) is
'The one timestamp format of every response: UTC, microseconds, Z (sorts as a string).';

create function api.audio_url(source_audio text)
returns text
language sql
stable
parallel safe
as $$
    select case
        when source_audio ~* '^[a-z][a-z0-9+.-]*:'
            or coalesce(current_setting('emberlog.audio_base_url', true), '') = ''
            then source_audio
        else rtrim(current_setting('emberlog.audio_base_url', true), '/')
            || '/' || ltrim(source_audio, '/')
    end
$$;

comment on function api.audio_url(text) is
'source_audio as presented: a stored relative path made absolute under the emberlog.audio_base_url setting (AUDIO_BASE_URL), a URL or an unset base left as stored.';

create function api.incident_json(incident api.incidents)
returns json
language sql
stable
parallel safe
return json_build_object(
    'id', incident.id,
    'dispatched_at', api.iso8601(incident.dispatched_at),
    'special_call', incident.special_call,
    'units', incident.units,
    'channel', incident.channel,
    'incident_type', incident.incident_type,
    'address', incident.address,
    'source_audio', api.audio_url(incident.source_audio),
    'original_text', incident.original_text,
    'transcript', incident.transcript,
    'parsed', incident.parsed,
    'created_at', api.iso8601(incident.created_at)
);

comment on function api.incident_json(api.incidents) is
'The JSON shape of one incident in every response (list, item, stream); source_audio as api.audio_url presents it.';

create function api.incidents_version()
returns bigint
language sql
stable
-- Reads data.incident_counts, which no web role may read. Not the api.incident_count
-- view: a request waiting on a deploy's lock of the view before its route's function
-- ran would then call that function by the oid the deploy dropped.
security definer
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(sum(c.writes), 0)::bigint from data.incident_counts as c
$$;

comment on function api.incidents_version() is
'The incidents'' version (api.incident_count.version): the incident routes'' ETags are made from it (@etag), so a client''s If-None-Match is answered 304 without rendering anything while no incident changed.';

create function api.get_incident(id bigint)
returns json
language plpgsql
stable
as $$
declare
    found json;
begin
    select api.incident_json(i) into found
    from api.incidents as i
    where i.id = get_incident.id;
    if found is null then
        raise sqlstate 'PT404' using
            message = 'incident ' || id || ' not found',
            hint = 'not_found';
    end if;
    return found;
end
$$;

comment on function api.get_incident(bigint) is
E'@http GET /api/v1/incidents/{id}\n@etag api.incidents_version\nOne incident by id; 404 when there is none.';

create view api.incident_count as
select
    sum(c.incidents)::bigint as incidents,
    sum(c.writes)::bigint as version  -- noqa: RF04
from data.incident_counts as c;

comment on view api.incident_count is
'How many incidents there are, without counting them: the sum of the trigger-maintained shards in data.incident_counts; version grows with every committed statement that changed incidents (an insert, update, delete or truncate, whoever wrote it): the incident routes'' ETags are made from it (@etag api.incidents_version), so a client''s If-None-Match is answered 304 without rendering anything while no incident changed.';

create function api.list_incidents(
    from_dispatched_at timestamptz default null,
    to_dispatched_at timestamptz default null,
    incident_type text default null,
    channel text default null,
    units text[] default null,
    address_search text default null,
    q text default null,
    page integer default 1,
    page_size integer default 50
)
returns json
language plpgsql
-- volatile only because PostgreSQL allows EXPLAIN (the estimated total) in no other
-- kind of function. It writes nothing; as a GET route it runs read-only.
volatile
as $$
declare
    -- address_search is a plain substring: escape ilike's wildcards and its escape character.
    address_pattern text := '%' || replace(replace(replace(
        list_incidents.address_search, '\', '\\'), '%', '\%'), '_', '\_') || '%';
    query tsquery := websearch_to_tsquery('english', nullif(trim(list_incidents.q), ''));
    skip bigint;  -- rows before this page (computed once page is known to be valid)
    exact_limit bigint := coalesce(
        nullif(current_setting('emberlog.exact_count_limit', true), '')::bigint, 1000
    );
    filters text[] := '{}';
    condition text := '';
    items json;
    shown integer;
    total bigint;
    exact boolean := true;
    plan json;
begin
    if page is null or page < 1 then
        raise sqlstate 'PT400' using
            message = 'page must be 1 or more',
            detail = '{"field": "page"}',
            hint = 'invalid_parameter';
    end if;
    if page_size is null or page_size not between 1 and 200 then
        raise sqlstate 'PT400' using
            message = 'page_size must be between 1 and 200',
            detail = '{"field": "page_size"}',
            hint = 'invalid_parameter';
    end if;
    skip := (list_incidents.page::bigint - 1) * list_incidents.page_size;
    -- Only the filters given, so each combination is planned for its own indexes. The
    -- values are bound ($1..$7), never spliced into the text.
    if from_dispatched_at is not null then filters := array_append(filters, 'i.dispatched_at >= $1'); end if;
    if to_dispatched_at is not null then filters := array_append(filters, 'i.dispatched_at <= $2'); end if;
    if list_incidents.incident_type is not null then filters := array_append(filters, 'i.incident_type = $3'); end if;
    if list_incidents.channel is not null then filters := array_append(filters, 'i.channel = $4'); end if;
    if coalesce(cardinality(list_incidents.units), 0) > 0 then filters := array_append(filters, 'i.units && $5'); end if;
    if address_search is not null then filters := array_append(filters, 'i.address ilike $6'); end if;
    if query is not null then filters := array_append(filters, 'i.search_vector @@ $7'); end if;
    if cardinality(filters) > 0 then
        condition := ' where ' || array_to_string(filters, ' and ');
    end if;

    execute 'select coalesce(json_agg(api.incident_json(p::api.incidents)'
        || ' order by p.dispatched_at desc, p.id desc), ''[]''), count(*)'
        || ' from (select i.* from api.incidents as i' || condition
        || ' order by i.dispatched_at desc, i.id desc limit $8 offset $9) as p'
    into items, shown
    using from_dispatched_at, to_dispatched_at, list_incidents.incident_type,
        list_incidents.channel, list_incidents.units, address_pattern, query,
        list_incidents.page_size, skip;

    -- The total, without counting a million rows per request:
    if shown between 1 and page_size - 1 or (shown = 0 and skip = 0) then
        total := skip + shown;  -- the last page: nothing to count
    elsif condition = '' then
        select c.incidents into total from api.incident_count as c;  -- trigger-maintained
    else
        -- The planner's estimate; counted exactly (at most exact_limit + 1 rows) only
        -- when the estimate is small enough to be worth it.
        execute 'explain (format json) select from api.incidents as i' || condition into plan
        using from_dispatched_at, to_dispatched_at, list_incidents.incident_type,
            list_incidents.channel, list_incidents.units, address_pattern, query;
        -- At least the rows seen so far; a page past the end says nothing of the total.
        total := greatest(
            (plan -> 0 -> 'Plan' ->> 'Plan Rows')::bigint,
            case when shown > 0 then skip + shown else 0 end
        );
        exact := total <= exact_limit;
        if exact then
            execute 'select count(*) from (select from api.incidents as i' || condition
                || ' limit $8) as m'
            into total
            using from_dispatched_at, to_dispatched_at, list_incidents.incident_type,
                list_incidents.channel, list_incidents.units, address_pattern, query,
                exact_limit + 1;
            if total > exact_limit then
                exact := false;  -- the estimate was low: say "more than exact_limit"
            end if;
        end if;
    end if;

    return json_build_object(
        'items', items,
        'total', total,
        'total_exact', exact,
        'page', page,
        'page_size', page_size
    );
end
$$;

comment on function api.list_incidents(
    timestamptz, timestamptz, text, text, text[], text, text, integer, integer
) is
E'@http GET /api/v1/incidents\n'
'@etag api.incidents_version\n'
'@param page {"minimum": 1}\n'
'@param page_size {"minimum": 1, "maximum": 200}\n'
'@param incident_type {"maxLength": 200}\n'
'@param channel {"maxLength": 200}\n'
'@param units {"maxItems": 50, "items": {"type": "string", "maxLength": 100}}\n'
'@param address_search {"maxLength": 200}\n'
'@param q {"maxLength": 200, "x-max-terms": 16}\n'
'Incidents newest first, filtered and paged. units matches any of the given units; address_search is a case-insensitive substring; q is full-text over type, address and transcript. total counts the matches: exactly without filters (a trigger-maintained count) and for up to emberlog.exact_count_limit matches (default 1000); above that it is the planner''s estimate and total_exact is false. Search inputs are bounded (q: 200 characters and 16 terms; address_search, incident_type, channel: 200 characters; units: 50) and refused with a 400 before any database work.';

create function api.create_incident(payload jsonb)
returns jsonb
language plpgsql
volatile
-- The one write path. security definer because no web role may touch data.*;
-- search_path is pinned so the caller cannot redirect any name used here.
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    new_dispatched_at timestamptz;
    new_source_audio text;
    new_original_text text;
    new_id bigint;
    new_created_at timestamptz;
    status text := '201';
    url text;
begin
    if payload is null or jsonb_typeof(payload) <> 'object' then
        raise sqlstate 'PT400' using
            message = 'the body must be a JSON object',
            hint = 'invalid_body';
    end if;
    new_dispatched_at := internal.payload_timestamp(payload, 'dispatched_at');
    if new_dispatched_at is null then
        perform internal.invalid_field('dispatched_at', 'is required');
    end if;
    new_source_audio := internal.payload_text(payload, 'source_audio');
    if coalesce(new_source_audio, '') = '' then
        perform internal.invalid_field('source_audio', 'is required and must not be empty');
    end if;
    new_original_text := internal.payload_text(payload, 'original_text');

    insert into data.incidents as i (
        dispatched_at, special_call, units, channel, incident_type, address,
        source_audio, original_text, transcript, parsed
    ) values (
        new_dispatched_at,
        coalesce(internal.payload_boolean(payload, 'special_call'), false),
        internal.payload_text_array(payload, 'units'),
        internal.payload_text(payload, 'channel'),
        internal.payload_text(payload, 'incident_type'),
        internal.payload_text(payload, 'address'),
        new_source_audio,
        new_original_text,
        internal.payload_text(payload, 'transcript'),
        internal.payload_object(payload, 'parsed')
    )
    on conflict do nothing
    returning i.id, i.created_at into new_id, new_created_at;

    if new_id is null then
        -- A retried duplicate: answer with the incident already stored.
        select i.id, i.created_at into new_id, new_created_at
        from data.incidents as i
        where md5(i.source_audio) = md5(new_source_audio)
            and i.source_audio = new_source_audio
            and i.original_text is not distinct from new_original_text;
        if new_id is null then
            -- Only an md5 collision between different texts gets here: refuse, store nothing.
            raise sqlstate 'PT409' using
                message = 'an incident with a colliding source_audio/original_text digest exists',
                hint = 'conflict';
        end if;
        status := '200';
    end if;

    -- Where GET serves the incident: the path its @http tag declares, written once.
    url := internal.absolute_url(replace(
        internal.route_path('api.get_incident(bigint)'), '{id}', new_id::text
    ));
    perform set_config('response.status', status, true);
    perform set_config('response.headers', json_build_object('Location', url)::text, true);
    return jsonb_build_object(
        'id', new_id,
        'created_at', api.iso8601(new_created_at),
        'links', jsonb_build_object('self', jsonb_build_object('_url', url))
    );
end
$$;

comment on function api.create_incident(jsonb) is
E'@http POST /api/v1/incidents\n'
'@body {"type": "object", "required": ["dispatched_at", "source_audio"], "properties": {'
'"dispatched_at": {"type": "string", "format": "date-time", "description": "ISO 8601; without an offset it is read in the server''s NAIVE_TIMEZONE"}, '
'"source_audio": {"type": "string", "minLength": 1, "description": "URL or path of the recording"}, '
'"special_call": {"type": ["boolean", "null"]}, '
'"units": {"type": ["array", "null"], "items": {"type": "string"}}, '
'"channel": {"type": ["string", "null"]}, '
'"incident_type": {"type": ["string", "null"]}, '
'"address": {"type": ["string", "null"]}, '
'"original_text": {"type": ["string", "null"]}, '
'"transcript": {"type": ["string", "null"]}, '
'"parsed": {"type": ["object", "null"]}}}\n'
'Records one incident from a JSON object (dispatched_at and source_audio required). 201 with the new id, or 200 with the existing id when the same source_audio and original_text were already stored.';

create function api.incident_events(after_id bigint, max_events integer default 100)
returns table (id bigint, event text, data json)
language plpgsql
volatile
-- security definer: reads the event log in data, which no web role may touch.
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    -- Number what writers queued (the server's own fetch may write; a read-only
    -- caller skips this). Its own statement: the read below takes a later snapshot.
    perform internal.publish_events();
    return query
    select
        e.id,
        case when i.id is not null then 'incident' else e.event end,
        case when i.id is not null then api.incident_json(i) else e.data end
    from internal.read_events('incidents', incident_events.after_id, incident_events.max_events) as e
    left join api.incidents as i on e.ref_id = i.id
    order by e.id;
end
$$;

-- The channel in the @sse tag is the one the triggers ring (internal.events_channel()):
-- the comment is built from it, so the two cannot drift apart.
do $comment$
begin
    execute pg_catalog.format(
        'comment on function api.incident_events(bigint, integer) is %L',
        '@sse /api/v1/sse/incidents channel=' || internal.events_channel() || E'\n'
        || 'Live incidents: one "incident" event per new incident, data as'
        || ' api.get_incident returns it. A stream function returns (id, event, data) after'
        || ' after_id in id order; a row with a null event only moves the position'
        || ' (after_id null: the newest id).'
    );
end
$comment$;
