drop table data.incidents;
