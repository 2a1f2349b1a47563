-- depends: 0001.roles

create schema if not exists data;
comment on schema data is 'Tables and sequences. Changed only by migrations; no web role has any privilege here.';

create schema if not exists internal;
comment on schema internal is 'Helpers and trigger functions (create or replace, never dropped). No web role has any privilege here.';

create schema if not exists extensions;
comment on schema extensions is 'Extensions used by data and internal.';

create extension if not exists pg_trgm with schema extensions;

revoke all on schema data, internal, extensions from public;

create table data.incidents (
    id bigint generated always as identity primary key,
    dispatched_at timestamptz not null,
    special_call boolean not null default false,
    units text[],
    channel text,
    incident_type text,
    address text,
    source_audio text not null,
    original_text text,
    transcript text,
    parsed jsonb,
    created_at timestamptz not null default now(),
    search_vector tsvector generated always as (
        setweight(to_tsvector('english'::regconfig, coalesce(incident_type, '')), 'A')
        || setweight(to_tsvector('english'::regconfig, coalesce(address, '')), 'B')
        || setweight(to_tsvector('english'::regconfig, coalesce(transcript, '')), 'C')
    ) stored,
    constraint incidents_source_audio_not_empty check (source_audio <> ''),
    constraint incidents_parsed_is_object check (parsed is null or jsonb_typeof(parsed) = 'object')
);

comment on table data.incidents is 'One dispatch heard on the radio, as extracted by the ingest service.';
comment on column data.incidents.dispatched_at is 'When the dispatch was heard.';
comment on column data.incidents.source_audio is 'Recording the dispatch came from (URL or path). One recording may hold several dispatches.';
comment on column data.incidents.original_text is 'Text the incident was extracted from; with source_audio it identifies a duplicate.';
comment on column data.incidents.parsed is 'Structured fields extracted by the ingest service (a JSON object).';
comment on column data.incidents.search_vector is 'Full-text document: incident_type (A), address (B), transcript (C).';

-- A duplicate is the same recording and the same text, a null text counting as a value.
-- Digests keep the key small whatever the length of the text (a btree entry must stay
-- under about 2.7 kB); api.create_incident compares the full values on a conflict.
create unique index incidents_dedup_key on data.incidents (
    md5(source_audio), md5(original_text)
) nulls not distinct;

create index incidents_newest on data.incidents (dispatched_at desc, id desc);
create index incidents_type_newest on data.incidents (incident_type, dispatched_at desc, id desc);
create index incidents_channel_newest on data.incidents (channel, dispatched_at desc, id desc);
create index incidents_units on data.incidents using gin (units);
create index incidents_address_trgm on data.incidents using gin (address extensions.gin_trgm_ops);
create index incidents_search on data.incidents using gin (search_vector);
