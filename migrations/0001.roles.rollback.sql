-- Roles are cluster-wide and may be shared with other databases: never dropped here.
select 1;
