-- 0095: limits on what one connect page can do (outside probe 2026-11-30).
-- The page's credential check asked the provider for every key an end user typed, without bound: the link now
-- counts the checks its page made, and the page refuses more than a few (services/connect_links.py).
-- Every click on an OAuth provider made a connect session, so one link could fill the tenant's quota of them:
-- choosing again now replaces the page's attempt, and the index below makes one attempt per link a fact.

ALTER TABLE connect_links ADD COLUMN credential_checks integer NOT NULL DEFAULT 0
    CONSTRAINT connect_links_credential_checks_not_negative CHECK (credential_checks >= 0);
COMMENT ON COLUMN connect_links.credential_checks IS
    'How many credential checks the link''s page asked the provider for; the page refuses more than its limit.';
COMMENT ON CONSTRAINT connect_links_credential_checks_not_negative ON connect_links IS
    'A count of checks is never negative.';

-- Sessions of one link started before this migration: the newest is the one its page would show.
DELETE FROM oauth_sessions older
    USING oauth_sessions newer
    WHERE older.connect_link_id = newer.connect_link_id
      AND (older.created_at, older.id) < (newer.created_at, newer.id);
CREATE UNIQUE INDEX oauth_sessions_one_per_link_idx ON oauth_sessions (connect_link_id)
    WHERE connect_link_id IS NOT NULL;
COMMENT ON INDEX oauth_sessions_one_per_link_idx IS
    'A connect page holds one OAuth attempt at a time: choosing again deletes the earlier one first.';
