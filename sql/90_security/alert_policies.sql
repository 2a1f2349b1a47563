-- Row-level security on the alert tables (migrations/0010 enables it): a user reads and
-- writes only their own rows, over HTTP (the token's sub) and in psql (the login) alike;
-- internal.alert_user_id() says who that is. Re-created on every deploy, in its
-- transaction, after the triggers: the deploy locks tables in the order an incident's
-- writer does (data.incidents; its matching reads the rules, then the rules' channels,
-- writes deliveries, whose foreign keys lock the channels), so neither can deadlock the
-- other. Matching and the worker run as the owner, which the policies do not bind.

drop policy if exists own_rows on data.alert_rules;
create policy own_rows on data.alert_rules
using (user_id = (select internal.alert_user_id()))
with check (user_id = (select internal.alert_user_id()));

comment on policy own_rows on data.alert_rules is 'A user''s own rules only.';

drop policy if exists own_rows on data.alert_rule_channels;
create policy own_rows on data.alert_rule_channels
using (user_id = (select internal.alert_user_id()))
with check (user_id = (select internal.alert_user_id()));

comment on policy own_rows on data.alert_rule_channels is 'A user''s own rules'' channels only.';

drop policy if exists own_rows on data.alert_deliveries;
create policy own_rows on data.alert_deliveries
using (user_id = (select internal.alert_user_id()))
with check (user_id = (select internal.alert_user_id()));

comment on policy own_rows on data.alert_deliveries is
'A user''s own deliveries only (system deliveries, user_id null, are no user''s).';

drop policy if exists own_rows on data.alert_channels;
create policy own_rows on data.alert_channels
using (user_id = (select internal.alert_user_id()))
with check (user_id = (select internal.alert_user_id()));

comment on policy own_rows on data.alert_channels is 'A user''s own channels only.';
