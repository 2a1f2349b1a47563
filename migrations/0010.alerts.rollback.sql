-- What sql/ built on these tables goes first (api is re-created by every deploy).
drop view if exists api.alert_channels cascade;
drop view if exists api.alert_rules cascade;
drop view if exists api.alert_deliveries cascade;
drop trigger if exists _600_queue_alerts on data.incidents;
drop table data.alert_deliveries;
drop table data.alert_system_destinations;
drop table data.alert_messages;
drop table data.alert_rule_channels;
drop table data.alert_rules;
drop table data.alert_channels;
drop table data.alert_users;
-- The roles stay (cluster-wide, as 0001's do): other databases may use them.
