-- The incident count behind unfiltered list totals (data.incident_counts, 16 shards),
-- kept by the statement triggers of sql/20_triggers/10_incidents.sql.

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
