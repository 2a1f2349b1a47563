-- Back to 0003's numbering at commit. Queued events are published first, so none is
-- lost; the function and trigger below are 0003's, as they were.
select internal.publish_events();

drop trigger _900_queue_event on data.incidents;
drop function internal.publish_events();
-- The trigger function is sql/20_triggers/10_incidents.sql's since then (0007 named it
-- internal.tg_queue_event): whichever is there goes.
drop function if exists internal.tg_queue_event();
drop function if exists internal.tg_incidents__queue_event();
drop table data.event_queue;

create or replace function internal.tg_log_event()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    new_id bigint;
begin
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
