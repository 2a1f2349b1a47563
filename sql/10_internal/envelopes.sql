-- Canonical event envelopes (data.event_envelopes; upstream docs/EVENT_MODEL_v0.2.md):
-- what a valid envelope is, and how an incident becomes a dispatch.incident.created
-- payload. Used by api.ingest_events and internal.tg_incidents__record_event; a DBA
-- changes a rule here and runs `make migrate`.
-- Bodies are strings (plpgsql or sql with $$), so no table depends on them.

create or replace function internal.iso8601(ts timestamptz)
returns text
language sql
stable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
    select to_char(ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

comment on function internal.iso8601(timestamptz) is
'api.iso8601''s format (UTC, microseconds, Z) for what internal writes into payloads (internal may not call api). A test keeps the two equal.';

create or replace function internal.timestamp_problem(value jsonb)
returns text
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
begin
    if jsonb_typeof(value) is distinct from 'string' then
        return 'must be an ISO 8601 timestamp string with an offset, e.g. 2026-11-22T05:04:15Z';
    end if;
    -- RFC 3339 (ISO 8601 with seconds and an offset): PostgreSQL alone would also take
    -- words such as 'now', and a time without an offset in the session's zone.
    if value #>> '{}' !~ '^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$' then
        return 'must be an ISO 8601 timestamp with seconds and an offset, e.g. 2026-11-22T05:04:15Z';
    end if;
    if not pg_catalog.pg_input_is_valid(value #>> '{}', 'timestamptz') then
        return 'is not a valid date and time: ' || (value #>> '{}');
    end if;
    return null;
end
$$;

comment on function internal.timestamp_problem(jsonb) is
'Null when value is an RFC 3339 timestamp string (seconds and an offset required) PostgreSQL can store; otherwise what is wrong.';

create or replace function internal.text_problem(
    value jsonb, required boolean, max_length integer default 200
)
returns text
language sql
immutable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
    select case
        when coalesce(jsonb_typeof(value), 'null') = 'null'
            then case when required then 'is required' end
        when jsonb_typeof(value) <> 'string'
            then 'must be a string' || case when required then '' else ' or null' end
        when length(value #>> '{}') not between 1 and max_length
            then 'must have 1 to ' || max_length || ' characters'
    end
$$;

comment on function internal.text_problem(jsonb, boolean, integer) is
'Null when value is a string of 1 to max_length characters (or absent/null when not required); otherwise what is wrong.';

create or replace function internal.audio_reference(source_audio text)
returns jsonb
language sql
stable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
    -- EVENT_MODEL §3.1: ref is the stable identifier (the stored source_audio); kind is
    -- "object" for a URL, "file" for a path; uri is where a client fetches it: the URL
    -- itself, or a path under emberlog.audio_base_url (AUDIO_BASE_URL) as the writing
    -- session has it; omitted when neither (the audio is not directly reachable).
    select jsonb_strip_nulls(jsonb_build_object(
        'ref', source_audio,
        'kind', case when is_url then 'object' else 'file' end,
        'uri', case
            when is_url then source_audio
            when base <> '' then rtrim(base, '/') || '/' || ltrim(source_audio, '/')
        end
    ))
    from (
        select
            source_audio ~* '^[a-z][a-z0-9+.-]*:' as is_url,
            coalesce(current_setting('emberlog.audio_base_url', true), '') as base
    ) as s
$$;

comment on function internal.audio_reference(text) is
'The audio {ref, kind, uri?} object (EVENT_MODEL §3.1) of an incident''s source_audio: ref as stored; kind object (a URL) or file (a path); uri the URL, or the path under emberlog.audio_base_url when the writing session sets it, else omitted.';

create or replace function internal.channel_system(channel text)
returns text
language sql
stable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
    select c.system from data.channel_systems as c where c.channel = channel_system.channel
$$;

comment on function internal.channel_system(text) is
'The trunked system of an incident''s channel (source.system of its dispatch.incident.created event): the channel''s row in data.channel_systems (exact match, kept by a DBA), else null. Edit this function to derive it otherwise.';

create or replace function internal.source_instance()
returns text
language sql
stable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(nullif(current_setting('emberlog.instance', true), ''), current_database())
$$;

comment on function internal.source_instance() is
'source.instance of the events the database itself records: the emberlog.instance setting (e.g. through DB_SETTINGS or alter database ... set), else the database''s name.';

create or replace function internal.incident_payload(
    id bigint,
    dispatched_at timestamptz,
    special_call boolean,
    units text[],
    channel text,
    incident_type text,
    address text,
    source_audio text,
    original_text text,
    transcript text,
    parsed jsonb
)
returns jsonb
language sql
stable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
    -- EVENT_MODEL §4.3's canonical payload: incident_id as a string, audio from
    -- source_audio (the stored incident keeps source_audio; the event carries audio).
    select jsonb_build_object(
        'incident_id', id::text,
        'dispatched_at', internal.iso8601(dispatched_at),
        'special_call', special_call,
        'units', units,
        'channel', channel,
        'incident_type', incident_type,
        'address', address,
        'audio', internal.audio_reference(source_audio),
        'original_text', original_text,
        'transcript', transcript,
        'parsed', parsed
    )
$$;

comment on function internal.incident_payload(
    bigint, timestamptz, boolean, text[], text, text, text, text, text, text, jsonb
) is
'The payload of an incident''s dispatch.incident.created event (EVENT_MODEL §4.3): incident_id (text), dispatched_at, special_call, units, channel, incident_type, address, audio {ref, kind, uri?} from source_audio, original_text, transcript, parsed; nulls kept.';

create or replace function internal.payload_problem(event_type text, schema_version text, payload jsonb)
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    problem text;
    field text;
begin
    -- Per-type checks, for the types (and major versions) the hub knows; any other type's
    -- payload need only be an object (the hub enforces structure, not interpretation).
    if event_type = 'dispatch.incident.created' and split_part(schema_version, '.', 1) = '1' then
        problem := internal.text_problem(payload -> 'incident_id', true);
        if problem is not null then
            return jsonb_build_object('field', 'payload.incident_id', 'message', problem);
        end if;
        problem := internal.timestamp_problem(payload -> 'dispatched_at');
        if problem is not null then
            return jsonb_build_object('field', 'payload.dispatched_at', 'message', problem);
        end if;
        if jsonb_typeof(payload -> 'audio') is distinct from 'object' then
            return jsonb_build_object('field', 'payload.audio', 'message', 'must be an object {ref, kind, uri?}');
        end if;
        problem := internal.text_problem(payload #> '{audio,ref}', true, 2000);
        if problem is not null then
            return jsonb_build_object('field', 'payload.audio.ref', 'message', problem);
        end if;
        if (payload #> '{audio,kind}') is null
            or (payload #> '{audio,kind}') not in ('"file"', '"object"', '"stream"') then
            return jsonb_build_object('field', 'payload.audio.kind', 'message', 'must be file, object or stream');
        end if;
        problem := internal.text_problem(payload #> '{audio,uri}', false, 2000);
        if problem is not null then
            return jsonb_build_object('field', 'payload.audio.uri', 'message', problem);
        end if;
        if coalesce(jsonb_typeof(payload -> 'special_call'), 'null') not in ('boolean', 'null') then
            return jsonb_build_object('field', 'payload.special_call', 'message', 'must be true, false or null');
        end if;
        if coalesce(jsonb_typeof(payload -> 'units'), 'null') not in ('array', 'null') or exists (
            select from jsonb_array_elements(
                case jsonb_typeof(payload -> 'units') when 'array' then payload -> 'units' end
            ) as u
            where jsonb_typeof(u) <> 'string'
        ) then
            return jsonb_build_object('field', 'payload.units', 'message', 'must be an array of strings or null');
        end if;
        foreach field in array array['channel', 'incident_type', 'address', 'original_text', 'transcript'] loop
            if coalesce(jsonb_typeof(payload -> field), 'null') not in ('string', 'null') then
                return jsonb_build_object('field', 'payload.' || field, 'message', 'must be a string or null');
            end if;
        end loop;
        if coalesce(jsonb_typeof(payload -> 'parsed'), 'null') not in ('object', 'null') then
            return jsonb_build_object('field', 'payload.parsed', 'message', 'must be an object or null');
        end if;
    end if;
    return null;
end
$$;

comment on function internal.payload_problem(text, text, jsonb) is
'Null when payload suits its event type; else {field, message}. Known types: dispatch.incident.created 1.x (EVENT_MODEL §4.3: incident_id, dispatched_at, audio {ref, kind file|object|stream, uri?} required; the other fields typed when present). Other types: any object.';

create or replace function internal.envelope_problem(event jsonb)
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    problem text;
begin
    if jsonb_typeof(event) is distinct from 'object' then
        return jsonb_build_object('field', null, 'message', 'an event must be a JSON object (an envelope)');
    end if;
    if jsonb_typeof(event -> 'event_id') is distinct from 'string'
        or (event ->> 'event_id') !~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' then
        return jsonb_build_object('field', 'event_id', 'message', 'is required: a UUID string');
    end if;
    if jsonb_typeof(event -> 'event_type') is distinct from 'string'
        or (event ->> 'event_type') !~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){2,}$'
        or length(event ->> 'event_type') > 200 then
        return jsonb_build_object(
            'field', 'event_type',
            'message', 'is required: domain.entity.action, lowercase segments of letters, digits and _ (at most 200 characters)'
        );
    end if;
    if jsonb_typeof(event -> 'schema_version') is distinct from 'string'
        or (event ->> 'schema_version')
        !~ '^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$'
        or length(event ->> 'schema_version') > 64 then
        return jsonb_build_object('field', 'schema_version', 'message', 'is required: a semantic version such as 1.0.0');
    end if;
    problem := internal.timestamp_problem(event -> 'timestamp');
    if problem is not null then
        return jsonb_build_object('field', 'timestamp', 'message', problem);
    end if;
    problem := internal.text_problem(event -> 'correlation_id', false);
    if problem is not null then
        return jsonb_build_object('field', 'correlation_id', 'message', problem);
    end if;
    if jsonb_typeof(event -> 'source') is distinct from 'object' then
        return jsonb_build_object('field', 'source', 'message', 'is required: an object {module, instance, system?}');
    end if;
    problem := internal.text_problem(event #> '{source,module}', true);
    if problem is not null then
        return jsonb_build_object('field', 'source.module', 'message', problem);
    end if;
    problem := internal.text_problem(event #> '{source,instance}', true);
    if problem is not null then
        return jsonb_build_object('field', 'source.instance', 'message', problem);
    end if;
    problem := internal.text_problem(event #> '{source,system}', false);
    if problem is not null then
        return jsonb_build_object('field', 'source.system', 'message', problem);
    end if;
    if jsonb_typeof(event -> 'payload') is distinct from 'object' then
        return jsonb_build_object('field', 'payload', 'message', 'is required: a JSON object');
    end if;
    return internal.payload_problem(event ->> 'event_type', event ->> 'schema_version', event -> 'payload');
end
$$;

comment on function internal.envelope_problem(jsonb) is
'Null when event is a valid envelope (EVENT_MODEL §2): event_id a UUID; event_type domain.entity.action (lowercase, 3+ segments, <= 200); schema_version semver; timestamp RFC 3339 with an offset; correlation_id absent, null or 1..200 characters; source {module, instance: 1..200 characters; system: absent, null or 1..200}; payload an object, checked by internal.payload_problem for known types. Else {field, message}: the first problem. Unknown keys are ignored.';
