-- What sql/ built on the column goes first, and the count's view as 0010's sql/ had it
-- (api is re-created by every deploy; until then the routes keep working).
drop function if exists api.incidents_version();
drop view if exists api.incident_count;
create view api.incident_count as
select sum(c.incidents)::bigint as incidents
from data.incident_counts as c;
comment on view api.incident_count is
'How many incidents there are, without counting them: the sum of the trigger-maintained shards in data.incident_counts.';
grant select on api.incident_count to emberlog_anon, emberlog_reader;
drop trigger if exists _100_count_updates on data.incidents;
-- The count trigger's function as it was before the version (sql/ re-creates the new one).
create or replace function internal.tg_incidents__count()
returns trigger
language plpgsql
volatile
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
        -- This backend's shard: concurrent writers do not queue on one counter row.
        update data.incident_counts
        set incidents = incidents + delta
        where shard = pg_catalog.pg_backend_pid() % 16;
    end if;
    return null;
end
$$;

alter table data.incident_counts drop column writes;
