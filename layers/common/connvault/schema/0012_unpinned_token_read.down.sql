-- 0012 down: token fetch reads through connvault_read_connection again (its pinned search_path included).

DROP FUNCTION connvault_token_read(uuid, uuid);
