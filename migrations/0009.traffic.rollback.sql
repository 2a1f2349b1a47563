-- What sql/ built on these tables goes first (api is re-created by every deploy).
drop view if exists api.traffic_sites cascade;
drop view if exists api.traffic_recorders cascade;
drop view if exists api.traffic_feeds cascade;
drop view if exists api.traffic_live_calls cascade;
drop view if exists api.traffic_decode_history cascade;
drop index data.events_stream_ref;
alter table data.event_queue reset (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold);
drop table data.traffic_calls;
drop table data.traffic_recorders;
drop table data.traffic_decode_history;
drop table data.traffic_sites;
drop table data.traffic_feeds;
