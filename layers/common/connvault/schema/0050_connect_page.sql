-- 0050: the hosted connect page (issue 21). A connect link is a connect session the end user finishes on a page
-- connvault serves: its link token (in the URL) works once, and is exchanged for a page token (in the page's
-- forms) that lasts until the link is used up or expires. Both are stored as SHA-256 only, like the OAuth state.
-- The tenant's page settings (display name, embedding origins, return URLs) and the catalog's credential forms
-- and checks for API-key and basic providers have their place here too.

CREATE TABLE connect_settings (
    tenant_id            uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    display_name         text CHECK (length(display_name) BETWEEN 1 AND 100),
    frame_ancestors      text[] NOT NULL DEFAULT '{}' CHECK (cardinality(frame_ancestors) <= 10),
    allowed_return_urls  text[] NOT NULL DEFAULT '{}' CHECK (cardinality(allowed_return_urls) <= 20),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE connect_settings IS 'How a tenant''s hosted connect page looks and where it may be embedded; one row per tenant, optional.';
COMMENT ON COLUMN connect_settings.tenant_id IS 'The tenant these settings belong to.';
COMMENT ON COLUMN connect_settings.display_name IS 'The name end users see on the connect page; NULL shows the tenant''s name.';
COMMENT ON COLUMN connect_settings.frame_ancestors IS 'Origins allowed to embed the connect page (CSP frame-ancestors); empty forbids embedding.';
COMMENT ON COLUMN connect_settings.allowed_return_urls IS 'Exact URLs a connect link may send the end user back to, whatever its providers.';
COMMENT ON COLUMN connect_settings.updated_at IS 'When the settings last changed; set by trigger (connvault_set_updated_at), never by the application.';
CREATE TRIGGER connect_settings_updated_at BEFORE UPDATE ON connect_settings
    FOR EACH ROW EXECUTE FUNCTION connvault_set_updated_at();

ALTER TABLE connect_settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON connect_settings
    USING (tenant_id = connvault_current_tenant()) WITH CHECK (tenant_id = connvault_current_tenant());

CREATE TABLE connect_links (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    link_sha256    bytea NOT NULL UNIQUE CHECK (length(link_sha256) = 32),
    page_sha256    bytea UNIQUE CHECK (length(page_sha256) = 32),
    provider_ids   uuid[] NOT NULL CHECK (cardinality(provider_ids) BETWEEN 1 AND 20),
    end_user_id    text NOT NULL CHECK (length(end_user_id) BETWEEN 1 AND 255),
    alias          text NOT NULL DEFAULT '' CHECK (length(alias) <= 100),
    scopes         text[],
    return_url     text,
    expires_at     timestamptz NOT NULL,
    opened_at      timestamptz,
    connection_id  uuid REFERENCES connections (id) ON DELETE SET NULL,
    completed_at   timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT connect_links_page_after_open CHECK (page_sha256 IS NULL OR opened_at IS NOT NULL)
);
COMMENT ON TABLE connect_links IS
    'Connect sessions finished on the hosted connect page. Purged with the tenant''s expired OAuth sessions.';
COMMENT ON COLUMN connect_links.id IS 'The link''s id; OAuth sessions started from its page point at it.';
COMMENT ON COLUMN connect_links.tenant_id IS 'The tenant that created the link.';
COMMENT ON COLUMN connect_links.link_sha256 IS 'SHA-256 of the token in the connect URL; the token itself is never stored. Works once.';
COMMENT ON COLUMN connect_links.page_sha256 IS
    'SHA-256 of the page token that the opened page carries in its forms; NULL before the link is opened and once it is used up.';
COMMENT ON COLUMN connect_links.provider_ids IS 'The providers the tenant allowed for this link, in the order the page lists them.';
COMMENT ON COLUMN connect_links.end_user_id IS 'The tenant''s id for the end user the connection is made for.';
COMMENT ON COLUMN connect_links.alias IS 'The alias the connection is made under.';
COMMENT ON COLUMN connect_links.scopes IS 'Scopes requested for an OAuth provider; NULL takes the integration''s.';
COMMENT ON COLUMN connect_links.return_url IS 'Where the page sends the end user back, with connection_id or error; NULL shows a closing page.';
COMMENT ON COLUMN connect_links.expires_at IS 'Until when the link can be opened; opening it starts the page''s own, equally long, window.';
COMMENT ON COLUMN connect_links.opened_at IS 'When the link was first opened (its token used up).';
COMMENT ON COLUMN connect_links.connection_id IS 'The connection the link made, once it made one.';
COMMENT ON COLUMN connect_links.completed_at IS 'When the link made its connection; the link works no more after that.';
COMMENT ON COLUMN connect_links.created_at IS 'When the tenant created the link.';
COMMENT ON CONSTRAINT connect_links_page_after_open ON connect_links IS 'A page token exists only for an opened link.';
CREATE INDEX connect_links_tenant_expires_idx ON connect_links (tenant_id, expires_at);
COMMENT ON INDEX connect_links_tenant_expires_idx IS 'Purging a tenant''s expired links when it starts a new connect session.';

ALTER TABLE connect_links ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON connect_links
    USING (tenant_id = connvault_current_tenant()) WITH CHECK (tenant_id = connvault_current_tenant());

ALTER TABLE oauth_sessions ADD COLUMN connect_link_id uuid REFERENCES connect_links (id) ON DELETE CASCADE;
COMMENT ON COLUMN oauth_sessions.connect_link_id IS
    'The connect link whose page started this OAuth attempt; the callback then answers with the page''s result, '
    'not a bare redirect. NULL for a session started through its authorize_url.';

ALTER TABLE providers ADD COLUMN credential_form jsonb CHECK (jsonb_typeof(credential_form) = 'object');
ALTER TABLE providers ADD COLUMN credential_check jsonb CHECK (jsonb_typeof(credential_check) = 'object');
COMMENT ON COLUMN providers.credential_form IS
    'API-key and basic providers: the connect page''s form (field labels, hints, patterns, help link); '
    'NULL shows the default fields of the auth type.';
COMMENT ON COLUMN providers.credential_check IS
    'API-key and basic providers: the request that verifies typed credentials before they are saved; NULL saves unchecked.';

-- The connect page's first step, before any tenant is known: which tenant a link or page token belongs to.
CREATE FUNCTION connvault_connect_link_tenant(p_sha256 bytea) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$ SELECT l.tenant_id FROM connect_links l WHERE l.link_sha256 = p_sha256 OR l.page_sha256 = p_sha256 $$;
COMMENT ON FUNCTION connvault_connect_link_tenant(bytea) IS
    'The connect page''s first step: which tenant a link or page token hash belongs to. The link itself is then '
    'read and changed under that tenant.';
