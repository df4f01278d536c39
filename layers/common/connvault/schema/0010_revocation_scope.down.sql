-- 0010 down: providers lose revocation_scope (a reconnect then never knows whether it may revoke the old grant).

ALTER TABLE providers DROP COLUMN revocation_scope;
