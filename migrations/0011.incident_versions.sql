-- depends: 0010.alerts

-- A version of the incidents, for conditional requests (ETag / If-None-Match, issue 18):
-- each shard of data.incident_counts also counts the writing statements that changed
-- rows through it. Their sum only grows, and changes with every committed insert,
-- update, delete or truncate of data.incidents, whoever wrote it (the route, Calypso,
-- psql). The triggers that keep it are in sql/20_triggers/10_incidents.sql.

alter table data.incident_counts add column writes bigint not null default 0;

comment on column data.incident_counts.writes is
'Statements that changed data.incidents through this shard (insert, update, delete, truncate). The sum over the shards is the incidents'' version: api.incidents_version().';
