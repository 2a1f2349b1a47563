-- What sql/ built on the envelopes goes first: api (re-created by every deploy) and the
-- incident trigger and its function.
drop view if exists api.events cascade;
drop trigger if exists _500_record_event on data.incidents;
drop function if exists internal.tg_incidents__record_event();
drop table data.channel_systems;
alter table data.event_log_state drop column envelopes_pruned_through;
drop table data.event_envelopes;
