-- 0004 down: every provider takes its scopes in `scope` again.
-- The column's values are not data of their own: the global catalog's come back from providers.yaml when 0004
-- is applied again (the runner seeds at the newest version), and custom providers always have 'scope'.

ALTER TABLE providers DROP COLUMN scope_parameter;
