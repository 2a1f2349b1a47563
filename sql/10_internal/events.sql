-- Reading and pruning the event log (data.events). Stream functions in api build on
-- internal.read_events (after internal.publish_events has numbered what writers
-- queued); a DBA calls or schedules internal.prune_events.

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

create or replace function internal.prune_events(retention interval default null)
returns bigint
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    keep interval := coalesce(
        prune_events.retention,
        nullif(current_setting('emberlog.event_retention', true), '')::interval,
        interval '7 days'
    );
    cutoff bigint;
    deleted bigint;
begin
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
'Delete events older than retention (default: the emberlog.event_retention setting, else 7 days); returns how many. Clients resuming from a deleted id get a reset event. Call it from cron, pg_cron or `emberlog-api prune-events`.';
