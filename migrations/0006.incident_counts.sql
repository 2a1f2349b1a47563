-- depends: 0005.role_timeouts

-- The number of incidents, kept by triggers so an unfiltered list never counts a
-- million rows per request. Sixteen shards: concurrent writers each update the shard
-- of their backend, so inserts do not queue on one counter row.

create table data.incident_counts (
    shard smallint primary key,
    incidents bigint not null default 0,
    constraint incident_counts_shard_range check (shard between 0 and 15)
);

comment on table data.incident_counts is
'Incident count in 16 shards (sum them): maintained by statement triggers on data.incidents; internal.recount_incidents() rebuilds it.';
comment on column data.incident_counts.incidents is 'Rows added minus rows removed through this shard (may be negative; only the sum means anything).';

insert into data.incident_counts (shard) select s from pg_catalog.generate_series(0, 15) as s;

create or replace function internal.tg_count_incidents()
returns trigger
language plpgsql
-- Fires as whatever role writes: definer rights reach data.incident_counts.
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    delta bigint;
begin
    if tg_op = 'TRUNCATE' then
        update data.incident_counts set incidents = 0 where incidents <> 0;
        return null;
    elsif tg_op = 'INSERT' then
        select count(*) into delta from new_rows;
    else
        select -count(*) into delta from old_rows;
    end if;
    if delta <> 0 then
        update data.incident_counts
        set incidents = incidents + delta
        where shard = pg_catalog.pg_backend_pid() % 16;
    end if;
    return null;
end
$$;

comment on function internal.tg_count_incidents() is
'Statement trigger: add the rows a statement inserted (or subtract those it deleted) to this backend''s shard of data.incident_counts; a truncate zeroes every shard.';

revoke all on function internal.tg_count_incidents() from public;

create trigger _100_count_inserts
after insert on data.incidents
referencing new table as new_rows
for each statement execute function internal.tg_count_incidents();

create trigger _100_count_deletes
after delete on data.incidents
referencing old table as old_rows
for each statement execute function internal.tg_count_incidents();

create trigger _100_count_truncates
after truncate on data.incidents
for each statement execute function internal.tg_count_incidents();

comment on trigger _100_count_inserts on data.incidents is 'Keeps data.incident_counts: rows inserted.';
comment on trigger _100_count_deletes on data.incidents is 'Keeps data.incident_counts: rows deleted.';
comment on trigger _100_count_truncates on data.incidents is 'Keeps data.incident_counts: truncate.';

create or replace function internal.recount_incidents()
returns bigint
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    counted bigint;
begin
    -- Writers wait while we count (share mode blocks inserts and deletes, not reads).
    lock table data.incidents in share mode;
    select count(*) into counted from data.incidents;
    update data.incident_counts
    set incidents = case when shard = 0 then counted else 0 end;
    return counted;
end
$$;

comment on function internal.recount_incidents() is
'Rebuild data.incident_counts from a real count (after a load with triggers disabled, e.g. session_replication_role = replica). Blocks writers while it counts; returns the count.';

revoke all on function internal.recount_incidents() from public;

-- Count what is already there (yoyo would print the result of a plain select).
do $$ begin perform internal.recount_incidents(); end $$;
