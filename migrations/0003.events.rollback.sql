drop trigger _900_log_event on data.incidents;
drop function internal.tg_log_event();
drop table data.event_log_state;
drop table data.events;
