-- The triggers on data.event_envelopes and their functions (internal.tg_event_envelopes__<task>),
-- in the house style of sql/20_triggers/10_incidents.sql (statement triggers, name order,
-- security definer, search_path pinned). Edit here and run `make migrate`.
--
-- Numbered after 10_incidents.sql on purpose: a deploy locks each table as it replaces
-- its triggers, in path order, and must take them in the order writers do (an incident
-- insert locks data.incidents, then its trigger data.event_envelopes). The other order
-- deadlocks against a writer (tests/e2e/test_redeploy.py found it).

create or replace function internal.tg_event_envelopes__queue_event()
returns trigger
language plpgsql
volatile
-- Fires as whatever role writes: definer rights reach data.event_queue.
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    stream_name constant text := 'envelopes';  -- the stream api.event_stream reads
begin
    -- An incident's own dispatch.incident.created envelope, recorded by its trigger
    -- (internal.tg_incidents__record_event, so nested: trigger depth above 1), is not
    -- queued again: the incident's event of the incidents stream stands for it, and
    -- api.event_stream reads both streams. Every other envelope (any ingested one,
    -- dispatch.incident.created included) is an event of this stream.
    insert into data.event_queue (stream, ref_id)
    select stream_name, n.position
    from new_rows as n
    where not (pg_catalog.pg_trigger_depth() > 1 and n.event_type = 'dispatch.incident.created')
    order by n.position;
    if found then
        -- Delivered at commit; carries only the stream: listeners fetch what is new.
        perform pg_catalog.pg_notify(internal.events_channel(), stream_name);
    end if;
    return null;
end
$$;

comment on function internal.tg_event_envelopes__queue_event() is
'Statement trigger on data.event_envelopes: queue one event of the envelopes stream per inserted envelope (ref_id = its position), except the dispatch.incident.created envelopes the incidents trigger records (their incident''s event of the incidents stream stands for them), and NOTIFY internal.events_channel() with the stream name. No lock: internal.publish_events numbers the events, so "after id N" never skips a late commit.';

create or replace trigger _900_queue_event
after insert on data.event_envelopes
referencing new table as new_rows
for each statement execute function internal.tg_event_envelopes__queue_event();

comment on trigger _900_queue_event on data.event_envelopes is
'Every new envelope, whoever writes it (api.ingest_events, a domain table''s trigger), becomes a queued event of the envelopes stream (published, numbered, by internal.publish_events).';
