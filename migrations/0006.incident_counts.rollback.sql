-- api (re-created from sql/ by every deploy) reads the counts: its view goes first.
drop view if exists api.incident_count;
drop trigger _100_count_truncates on data.incidents;
drop trigger _100_count_deletes on data.incidents;
drop trigger _100_count_inserts on data.incidents;
drop function internal.recount_incidents();
-- The trigger function is sql/20_triggers/10_incidents.sql's since then (0006 named it
-- internal.tg_count_incidents): whichever is there goes.
drop function if exists internal.tg_count_incidents();
drop function if exists internal.tg_incidents__count();
drop table data.incident_counts;
