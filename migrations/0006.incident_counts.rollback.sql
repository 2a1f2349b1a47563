drop trigger _100_count_truncates on data.incidents;
drop trigger _100_count_deletes on data.incidents;
drop trigger _100_count_inserts on data.incidents;
drop function internal.recount_incidents();
drop function internal.tg_count_incidents();
drop table data.incident_counts;
