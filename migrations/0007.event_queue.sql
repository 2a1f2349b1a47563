-- depends: 0006.incident_counts

-- Writers no longer number events. 0003 gave each event its id at commit, under an
-- advisory lock held through the commit's WAL flush, so every commit of an incident
-- waited for the one before it to reach disk. Now a writer only queues the event
-- (data.event_queue, no lock); a stream function whose transaction may write (the
-- server's own fetch) publishes the queue into data.events: ids are handed out there, by one publisher at a time, under the
-- lock held to the end of the publisher's commit. Any snapshot that sees id N still
-- sees every id below N; a writer that commits late is simply published later, with
-- a later id. Publishing is cheap and batched: one publisher moves every queued row.

create table data.event_queue (
    id bigint generated always as identity primary key,
    stream text not null,  -- noqa: RF04
    ref_id bigint not null,
    queued_at timestamptz not null default pg_catalog.clock_timestamp()
);

comment on table data.event_queue is
'Events written but not yet published into data.events (which numbers them). Filled by internal.tg_queue_event, emptied by internal.publish_events.';
comment on column data.event_queue.stream is 'Which stream the event belongs to (e.g. incidents).';
comment on column data.event_queue.ref_id is 'Id of the changed row (for incidents: data.incidents.id).';
comment on column data.event_queue.queued_at is 'When the writing statement ran (becomes data.events.created_at).';

comment on table data.events is
'Event log of the live streams, numbered in publication order by internal.publish_events: a reader of "id > last" never skips an event, whenever its writer committed.';
comment on column data.events.created_at is 'When the event was written (data.event_queue.queued_at).';

create or replace function internal.tg_queue_event()
returns trigger
language plpgsql
-- Fires as whatever role writes: definer rights reach data.event_queue.
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    insert into data.event_queue (stream, ref_id)
    select tg_argv[0], n.id from new_rows as n order by n.id;
    if found then
        -- Delivered at commit; carries only the stream: listeners fetch what is new.
        perform pg_catalog.pg_notify(tg_argv[1], tg_argv[0]);
    end if;
    return null;
end
$$;

comment on function internal.tg_queue_event() is
'Statement trigger: queue one event per inserted row (stream tg_argv[0], ref_id = the row''s id) and NOTIFY channel tg_argv[1] with the stream name. No lock: internal.publish_events numbers the events.';

revoke all on function internal.tg_queue_event() from public;

create or replace function internal.publish_events()
returns bigint
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    published bigint;
begin
    if current_setting('transaction_read_only')::boolean then
        return 0;  -- a read-only reader (a client catching up, a standby) reads as is
    end if;
    if not exists (select from data.event_queue) then
        return 0;  -- the common case: nothing to do, no lock, no write
    end if;
    -- One publisher at a time, and the lock is held to the end of its commit: ids
    -- handed out later become visible later. Every statement below takes a fresh
    -- snapshot, so after waiting we see what the previous publisher left.
    perform pg_catalog.pg_advisory_xact_lock(1702260340);  -- 0x65766e74, "evnt"
    with moved as (
        delete from data.event_queue as q
        returning q.id, q.stream, q.ref_id, q.queued_at
    )
    insert into data.events (stream, ref_id, created_at)
    select m.stream, m.ref_id, m.queued_at from moved as m order by m.id;
    get diagnostics published = row_count;
    return published;
end
$$;

comment on function internal.publish_events() is
'Move every committed event of data.event_queue into data.events, numbering them (one publisher at a time, the lock held through its commit, so ids become visible in order). Returns how many; 0 in a read-only transaction. Stream functions call it before reading (a statement of its own, so the read that follows sees what it published). The lock is held to the end of the caller''s transaction: do not leave such a transaction open.';

revoke all on function internal.publish_events() from public;

-- Whatever 0003's trigger was about to number is numbered by it; from here on, queue.
drop trigger _900_log_event on data.incidents;
drop function internal.tg_log_event();

create trigger _900_queue_event
after insert on data.incidents
referencing new table as new_rows
for each statement execute function internal.tg_queue_event('incidents', 'emberlog_events');

comment on trigger _900_queue_event on data.incidents is
'Every new incident, whoever writes it, becomes a queued event of the incidents stream (published, numbered, by internal.publish_events).';
