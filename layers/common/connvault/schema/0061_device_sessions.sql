-- 0061: device authorization (RFC 8628). A device connect session is started at the provider's device
-- authorization endpoint and completed by polling its token endpoint until the end user approved on another
-- device; the session row carries the sealed device code and the polling schedule. Each poll is a compare-and-set
-- on next_poll_at plus a short lease, so however many callers (the tenant asking, the scheduled poller) want a
-- session advanced, the provider is asked at most once per interval.

ALTER TABLE providers ADD COLUMN device_authorization_url text;
COMMENT ON COLUMN providers.device_authorization_url IS
    'RFC 8628 device authorization endpoint (discovery''s device_authorization_endpoint); NULL: no device flow.';

CREATE TABLE device_sessions (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider_id        uuid NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    end_user_id        text NOT NULL CHECK (length(end_user_id) BETWEEN 1 AND 255),
    alias              text NOT NULL DEFAULT '' CHECK (length(alias) <= 100),
    scopes             text[] NOT NULL DEFAULT '{}',
    codes              bytea,
    verification_uri   text NOT NULL,
    status             text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'completed', 'denied', 'expired', 'failed')),
    interval_seconds   integer NOT NULL CHECK (interval_seconds BETWEEN 1 AND 3600),
    next_poll_at       timestamptz NOT NULL,
    poll_failures      integer NOT NULL DEFAULT 0 CHECK (poll_failures >= 0),
    poll_lease_until   timestamptz,
    poll_lease_owner   uuid,
    expires_at         timestamptz NOT NULL,
    connection_id      uuid REFERENCES connections (id) ON DELETE SET NULL,
    error_code         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT device_sessions_pending_has_codes CHECK (status <> 'pending' OR codes IS NOT NULL)
);
COMMENT ON TABLE device_sessions IS
    'Device connect sessions (RFC 8628): started at the provider, advanced by polling its token endpoint until the '
    'end user approves, denies, or the code expires. Finished sessions keep no secret and are purged a day after '
    'they expire.';
COMMENT ON COLUMN device_sessions.id IS 'The connect session id of the API (GET /connect-sessions/{id}).';
COMMENT ON COLUMN device_sessions.tenant_id IS 'The tenant that started the session; RLS binds every read and write to it.';
COMMENT ON COLUMN device_sessions.provider_id IS 'The provider whose device flow this is.';
COMMENT ON COLUMN device_sessions.end_user_id IS 'Becomes the connection''s end_user_id.';
COMMENT ON COLUMN device_sessions.alias IS 'Becomes the connection''s alias.';
COMMENT ON COLUMN device_sessions.scopes IS 'The scopes asked for at the device authorization endpoint.';
COMMENT ON COLUMN device_sessions.codes IS
    'Envelope of the device code, the user code and verification_uri_complete; NULL once the session has ended.';
COMMENT ON COLUMN device_sessions.verification_uri IS 'Where the end user enters the user code (not a secret).';
COMMENT ON COLUMN device_sessions.status IS
    'pending (polling), completed (connection_id holds the grant), denied (access_denied), expired (the code ran '
    'out) or failed (error_code says why).';
COMMENT ON COLUMN device_sessions.interval_seconds IS
    'Seconds between polls as the provider asked, raised by 5 on each slow_down (RFC 8628 3.5).';
COMMENT ON COLUMN device_sessions.next_poll_at IS 'No poll starts before this; set one interval ahead as each poll starts.';
COMMENT ON COLUMN device_sessions.poll_failures IS 'Consecutive polls that failed in a retryable way; the wait doubles with each.';
COMMENT ON COLUMN device_sessions.poll_lease_until IS 'A poll is in flight until this time; nobody else polls before then.';
COMMENT ON COLUMN device_sessions.poll_lease_owner IS 'Random id of the poll in flight; its outcome is recorded only while it is still the owner.';
COMMENT ON COLUMN device_sessions.expires_at IS 'When the device code expires (the provider''s expires_in); the session ends then.';
COMMENT ON COLUMN device_sessions.connection_id IS 'The connection a completed session made.';
COMMENT ON COLUMN device_sessions.error_code IS 'Why a session was denied, expired or failed (the provider''s code).';
COMMENT ON COLUMN device_sessions.created_at IS 'When the session was started.';
COMMENT ON COLUMN device_sessions.updated_at IS
    'When the session last changed; set by trigger (connvault_set_updated_at). A poll lease taken or released does '
    'not count.';
COMMENT ON CONSTRAINT device_sessions_pending_has_codes ON device_sessions IS 'A pending session can still be polled.';

CREATE TRIGGER device_sessions_updated_at BEFORE UPDATE ON device_sessions
    FOR EACH ROW EXECUTE FUNCTION connvault_set_updated_at('poll_lease_until', 'poll_lease_owner');

CREATE INDEX device_sessions_due_idx ON device_sessions (next_poll_at) WHERE status = 'pending';
COMMENT ON INDEX device_sessions_due_idx IS 'The poller''s claim: pending sessions due for a poll, across tenants.';
CREATE INDEX device_sessions_tenant_expires_idx ON device_sessions (tenant_id, expires_at);
COMMENT ON INDEX device_sessions_tenant_expires_idx IS 'A tenant''s long-ended sessions, purged under RLS when it starts one.';

ALTER TABLE device_sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON device_sessions
    USING (tenant_id = connvault_current_tenant()) WITH CHECK (tenant_id = connvault_current_tenant());

CREATE FUNCTION connvault_claim_device_polls(p_now timestamptz, p_limit integer, p_owner uuid, p_lease_until timestamptz)
    RETURNS TABLE (id uuid, tenant_id uuid)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        WITH due AS (
            SELECT d.id FROM device_sessions d
            WHERE d.status = 'pending' AND d.next_poll_at <= p_now
              AND (d.poll_lease_until IS NULL OR d.poll_lease_until <= p_now)
            ORDER BY d.next_poll_at
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        )
        UPDATE device_sessions d
        SET poll_lease_until = p_lease_until, poll_lease_owner = p_owner,
            next_poll_at = p_now + make_interval(secs => d.interval_seconds)
        FROM due WHERE d.id = due.id
        RETURNING d.id, d.tenant_id
    $$;
COMMENT ON FUNCTION connvault_claim_device_polls(timestamptz, integer, uuid, timestamptz) IS
    'The device poller''s claim across tenants: leases pending sessions due for a poll (SKIP LOCKED), moves their '
    'next poll one interval ahead, and returns ids only. Each poll then runs under its own tenant.';

CREATE FUNCTION connvault_next_device_poll() RETURNS timestamptz
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$ SELECT min(d.next_poll_at) FROM device_sessions d WHERE d.status = 'pending' $$;
COMMENT ON FUNCTION connvault_next_device_poll() IS
    'When the poller has work next: the earliest next poll of any pending session, across tenants; NULL when none '
    'is pending (the poller stops). A time only, nothing of any tenant.';
