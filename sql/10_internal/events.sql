-- The event log behind the live streams (DESIGN §5): publishing, reading and pruning.
-- Writers only queue events (data.event_queue, filled by each table's statement trigger
-- internal.tg_<table>__queue_event, see sql/20_triggers/), ringing the doorbell on
-- internal.events_channel(). Stream functions in api call internal.publish_events,
-- which numbers what is queued, then build on internal.read_events; a DBA calls or
-- schedules internal.prune_events.

create or replace function internal.publisher_lock_key()
returns bigint
language sql
immutable
parallel safe
return 1702260340;  -- 0x65766e74, "evnt"

comment on function internal.publisher_lock_key() is
'The advisory lock (pg_advisory_xact_lock) one publisher of events holds to the end of its commit. In pg_locks: locktype advisory, classid 0, objid this number, objsubid 1.';

create or replace function internal.events_channel()
returns text
language sql
immutable
parallel safe
return 'emberlog_events';

comment on function internal.events_channel() is
'The NOTIFY channel of the event doorbell (the payload is the stream name). The @sse tags of the stream functions name this channel (their comments are built from it).';

comment on table data.event_queue is
'Events written but not yet published into data.events (which numbers them). Filled by the tables'' statement triggers (internal.tg_incidents__queue_event), emptied by internal.publish_events.';

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
    perform pg_catalog.pg_advisory_xact_lock(internal.publisher_lock_key());
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
'Move every committed event of data.event_queue into data.events, numbering them (one publisher at a time, under the advisory lock internal.publisher_lock_key() held through its commit, so ids become visible in order). Returns how many; 0 in a read-only transaction. Stream functions call it before reading (a statement of its own, so the read that follows sees what it published). The lock is held to the end of the caller''s transaction: do not leave such a transaction open.';

create or replace function internal.read_events(stream text, after_id bigint, max_events integer)
returns table (id bigint, ref_id bigint, event text, data json)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    pruned bigint;
    head bigint;
    position bigint := read_events.after_id;
begin
    select s.pruned_through into pruned from data.event_log_state as s;
    select greatest(max(e.id), pruned, 0) into head from data.events as e;
    if position is null then
        -- No position yet: one marker row naming the newest id (where live starts).
        return query select head, null::bigint, null::text, null::json;
        return;
    end if;
    if position < pruned or position > head then
        -- Events after this id are gone (or it is not one of ours): tell the client to
        -- refetch, and go on from the newest id.
        return query select
            head,
            null::bigint,
            'reset'::text,
            json_build_object(
                'reason', case when position < pruned
                    then 'last_event_id is older than the retained event log'
                    else 'last_event_id is unknown' end,
                'last_event_id', position,
                'resume_after', head
            );
        position := head;
    end if;
    return query
    select e.id, e.ref_id, null::text, null::json
    from data.events as e
    where e.stream = read_events.stream and e.id > position
    order by e.id
    limit greatest(least(read_events.max_events, 1000), 1);
end
$$;

comment on function internal.read_events(text, bigint, integer) is
'The events of one stream after after_id, oldest first, at most max_events (1 to 1000). after_id null: one marker row with the newest id. after_id older than the retained log (or newer than any id): first a reset row, then events after the newest id.';

create or replace function internal.prune_envelopes(retention interval)
returns bigint
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    cutoff bigint;
    deleted bigint;
begin
    -- A prefix of positions, as for data.events: every envelope at or below the newest
    -- position stored before the cutoff goes, so "after position N" stays exact for every
    -- N at or above envelopes_pruned_through.
    select max(e.position) into cutoff
    from data.event_envelopes as e
    where e.received_at < clock_timestamp() - prune_envelopes.retention;
    if cutoff is null then
        return 0;
    end if;
    delete from data.event_envelopes as e where e.position <= cutoff;
    get diagnostics deleted = row_count;
    update data.event_log_state as s
    set envelopes_pruned_through = greatest(s.envelopes_pruned_through, cutoff);
    return deleted;
end
$$;

comment on function internal.prune_envelopes(interval) is
'Delete the event envelopes (data.event_envelopes) stored longer ago than retention, as a prefix of positions (recorded in data.event_log_state.envelopes_pruned_through); returns how many. internal.prune_events calls it with its own retention.';

create or replace function internal.prune_events(retention interval default null)
returns bigint
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    keep interval := coalesce(
        prune_events.retention, internal.interval_setting('emberlog.event_retention', '7 days')
    );
    cutoff bigint;
    deleted bigint;
begin
    -- The canonical envelopes (data.event_envelopes) follow the same retention; finished
    -- alert deliveries their own (internal.prune_alerts).
    perform internal.prune_envelopes(keep);
    perform internal.prune_alerts();
    -- Number what is queued first: retention applies to every written event.
    perform internal.publish_events();
    -- Delete a prefix of ids (ids become visible in order), so "after id N" stays exact
    -- for every N at or above pruned_through.
    select max(e.id) into cutoff
    from data.events as e
    where e.created_at < clock_timestamp() - keep;
    if cutoff is null then
        return 0;
    end if;
    delete from data.events as e where e.id <= cutoff;
    get diagnostics deleted = row_count;
    update data.event_log_state as s set pruned_through = greatest(s.pruned_through, cutoff);
    return deleted;
end
$$;

comment on function internal.prune_events(interval) is
'Delete events older than retention (default: the emberlog.event_retention setting, else 7 days); returns how many of the streams'' log (data.events). The canonical envelopes older than the same retention go too (internal.prune_envelopes), and finished alert deliveries past theirs (internal.prune_alerts). Clients resuming from a deleted id get a reset event. Call it from cron, pg_cron or `emberlog-api prune-events`.';
