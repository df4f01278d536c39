-- 0095 down: links count no credential checks and may hold several OAuth attempts again, as before 0095.

DROP INDEX oauth_sessions_one_per_link_idx;
ALTER TABLE connect_links DROP COLUMN credential_checks;
