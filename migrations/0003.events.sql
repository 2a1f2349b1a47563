-- depends: 0002.incidents

-- The event log behind the live streams (DESIGN §5). One row per change, written in
-- the changing transaction; a NOTIFY carries only the row's id (payloads are capped
-- at 8000 bytes, rows are not).

create table data.events (
    id bigint generated always as identity primary key,
    stream text not null,  -- noqa: RF04
    ref_id bigint not null,
    created_at timestamptz not null default pg_catalog.clock_timestamp()
);

comment on table data.events is
'Event log of the live streams. Written only by internal.tg_log_event, which hands out ids in commit order: a reader of "id > last" never skips an event that commits late.';
comment on column data.events.stream is 'Which stream the event belongs to (e.g. incidents).';
comment on column data.events.ref_id is 'Id of the changed row (for incidents: data.incidents.id).';
comment on column data.events.created_at is 'When the writing transaction committed (clock time at commit).';

create table data.event_log_state (
    singleton boolean primary key default true,
    pruned_through bigint not null default 0,
    constraint event_log_state_one_row check (singleton)
);

comment on table data.event_log_state is 'One row: how far internal.prune_events has deleted the log.';
comment on column data.event_log_state.pruned_through is
'Every event with an id up to this one has been deleted; a client resuming from an older id is sent a reset.';

insert into data.event_log_state default values;

create or replace function internal.tg_log_event()
returns trigger
language plpgsql
-- Fires at commit, as whatever role commits: definer rights reach data.events.
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    new_id bigint;
begin
    -- Ids in commit order. This trigger is deferred, so it runs as the transaction
    -- commits; the lock is held from here to the end of the commit, so a transaction
    -- that takes a later id becomes visible only after this one. Any snapshot that
    -- sees id N therefore sees every committed id below N.
    perform pg_catalog.pg_advisory_xact_lock(1702260340);  -- 0x65766e74, "evnt"
    insert into data.events (stream, ref_id) values (tg_argv[0], new.id)
    returning id into new_id;
    perform pg_catalog.pg_notify(tg_argv[1], new_id::text);
    return null;
end
$$;

comment on function internal.tg_log_event() is
'Deferred trigger: log one event (stream tg_argv[0], ref_id = new.id) at commit and NOTIFY its id on channel tg_argv[1].';

revoke all on function internal.tg_log_event() from public;

create constraint trigger _900_log_event
after insert on data.incidents
deferrable initially deferred
for each row execute function internal.tg_log_event('incidents', 'emberlog_events');

comment on trigger _900_log_event on data.incidents is
'Every new incident, whoever writes it, becomes an event of the incidents stream at commit.';
