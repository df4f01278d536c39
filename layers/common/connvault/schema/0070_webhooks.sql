-- 0070: tenant events. Webhook endpoints, the transactional outbox of events, and one delivery per
-- (event, subscribed endpoint).
--
-- Events are written by triggers on the state columns of `connections`, in the transaction that changes the
-- state: an event exists if and only if its change committed (no event lost, none invented), whichever code
-- path made the change (connect callback, refresh on read, scheduler, fan-out worker, delete). A tenant without
-- a subscribed endpoint gets no row at all, and a change that is not an event (a plain successful refresh, a
-- lease taken or released) does not even call the trigger function: the WHEN clause filters it.

CREATE TABLE webhook_endpoints (
    id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id                   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url                         text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    description                 text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    event_types                 text[] NOT NULL CHECK (cardinality(event_types) BETWEEN 1 AND 50),
    enabled                     boolean NOT NULL DEFAULT true,
    secret                      bytea NOT NULL,
    previous_secret             bytea,
    previous_secret_expires_at  timestamptz,
    consecutive_failures        integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    circuit_open_until          timestamptz,
    last_success_at             timestamptz,
    last_failure_at             timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_endpoints_previous_secret_expires
        CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL))
);
COMMENT ON TABLE webhook_endpoints IS 'A tenant''s webhook receiver: where its events are sent, and which ones.';
COMMENT ON COLUMN webhook_endpoints.id IS 'Endpoint id, named in the API paths.';
COMMENT ON COLUMN webhook_endpoints.tenant_id IS 'The owning tenant (row-level security).';
COMMENT ON COLUMN webhook_endpoints.url IS 'Where deliveries are POSTed; https to a public host (the egress guard checks every call).';
COMMENT ON COLUMN webhook_endpoints.description IS 'The tenant''s own label.';
COMMENT ON COLUMN webhook_endpoints.event_types IS 'Event types this endpoint receives (e.g. connection.needs_reauth).';
COMMENT ON COLUMN webhook_endpoints.enabled IS 'A disabled endpoint is neither sent to nor given new deliveries.';
COMMENT ON COLUMN webhook_endpoints.secret IS 'Envelope of the Standard Webhooks signing secret (whsec_...); shown to the tenant once.';
COMMENT ON COLUMN webhook_endpoints.previous_secret IS 'Envelope of the secret replaced by the last rotation; it still signs until previous_secret_expires_at.';
COMMENT ON COLUMN webhook_endpoints.previous_secret_expires_at IS 'End of the rotation overlap, in which deliveries carry both signatures.';
COMMENT ON COLUMN webhook_endpoints.consecutive_failures IS 'Failed attempts since the last success; the circuit opens at the threshold.';
COMMENT ON COLUMN webhook_endpoints.circuit_open_until IS 'While in the future nothing is sent to this endpoint; after it, one probe at a time until a success.';
COMMENT ON COLUMN webhook_endpoints.last_success_at IS 'When a delivery last got a 2xx.';
COMMENT ON COLUMN webhook_endpoints.last_failure_at IS 'When a delivery attempt last failed.';
COMMENT ON COLUMN webhook_endpoints.created_at IS 'Creation time.';
COMMENT ON COLUMN webhook_endpoints.updated_at IS 'Last change by the tenant (not by deliveries).';
CREATE INDEX webhook_endpoints_tenant_idx ON webhook_endpoints (tenant_id, created_at, id);

CREATE TABLE webhook_events (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    type         text NOT NULL CHECK (length(type) BETWEEN 1 AND 100),
    subject_id   uuid NOT NULL,
    data         jsonb NOT NULL CHECK (jsonb_typeof(data) = 'object'),
    occurred_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE webhook_events IS
    'The transactional outbox: one row per state change that a subscribed endpoint wants, written by the '
    'trigger in the same transaction as the change. Ids, slugs, statuses and codes only; never a secret.';
COMMENT ON COLUMN webhook_events.id IS 'The event id; sent as webhook-id (msg_<hex>), the receiver''s deduplication key.';
COMMENT ON COLUMN webhook_events.tenant_id IS 'The owning tenant (row-level security).';
COMMENT ON COLUMN webhook_events.type IS 'Event type, e.g. connection.refresh_failed.';
COMMENT ON COLUMN webhook_events.subject_id IS 'The connection the event is about: deliveries are ordered per subject and endpoint.';
COMMENT ON COLUMN webhook_events.data IS 'The payload''s data object.';
COMMENT ON COLUMN webhook_events.occurred_at IS 'When the change happened (inside its transaction).';
CREATE INDEX webhook_events_tenant_idx ON webhook_events (tenant_id, occurred_at);

CREATE TABLE webhook_deliveries (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq               bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    endpoint_id       uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id          uuid NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    subject_id        uuid NOT NULL,
    status            text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    retry_from        timestamptz NOT NULL DEFAULT now(),
    lease_until       timestamptz,
    lease_owner       uuid,
    last_attempt_at   timestamptz,
    last_status_code  integer,
    last_error_code   text,
    delivered_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_deliveries_event_endpoint_key UNIQUE (event_id, endpoint_id)
);
COMMENT ON TABLE webhook_deliveries IS 'One event on its way to one endpoint: pending, delivered, or failed after the retry window.';
COMMENT ON COLUMN webhook_deliveries.id IS 'Delivery id, named in the API paths (redeliver).';
COMMENT ON COLUMN webhook_deliveries.seq IS 'Insertion order; per subject it is commit order (the change held the subject''s row lock).';
COMMENT ON COLUMN webhook_deliveries.tenant_id IS 'The owning tenant (row-level security).';
COMMENT ON COLUMN webhook_deliveries.endpoint_id IS 'Where it goes.';
COMMENT ON COLUMN webhook_deliveries.event_id IS 'What goes.';
COMMENT ON COLUMN webhook_deliveries.subject_id IS 'Copy of the event''s subject: a delivery waits for every earlier pending one of its subject and endpoint.';
COMMENT ON COLUMN webhook_deliveries.status IS 'pending (to send or retry), delivered (a 2xx came back), failed (retry window over; can be redelivered).';
COMMENT ON COLUMN webhook_deliveries.attempts IS 'Attempts made so far.';
COMMENT ON COLUMN webhook_deliveries.next_attempt_at IS 'Earliest time of the next attempt (exponential backoff with jitter).';
COMMENT ON COLUMN webhook_deliveries.retry_from IS 'Start of the retry window (creation, or the last redeliver request).';
COMMENT ON COLUMN webhook_deliveries.lease_until IS 'A sender holds it until then; a crashed sender''s lease runs out and the delivery is sent again.';
COMMENT ON COLUMN webhook_deliveries.lease_owner IS 'Random id of the sender holding the lease; outcomes compare-and-set on it.';
COMMENT ON COLUMN webhook_deliveries.last_attempt_at IS 'When the last attempt ended.';
COMMENT ON COLUMN webhook_deliveries.last_status_code IS 'HTTP status of the last attempt, NULL when no answer came.';
COMMENT ON COLUMN webhook_deliveries.last_error_code IS 'Why the last attempt failed (http_status, timeout, unreachable, blocked_address).';
COMMENT ON COLUMN webhook_deliveries.delivered_at IS 'When the receiver acknowledged it.';
COMMENT ON COLUMN webhook_deliveries.created_at IS 'When the event was written.';
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_order_idx ON webhook_deliveries (endpoint_id, subject_id, seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_listing_idx ON webhook_deliveries (endpoint_id, seq DESC);
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id);

ALTER TABLE webhook_endpoints ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_endpoints
    USING (tenant_id = connvault_current_tenant()) WITH CHECK (tenant_id = connvault_current_tenant());
ALTER TABLE webhook_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_events
    USING (tenant_id = connvault_current_tenant()) WITH CHECK (tenant_id = connvault_current_tenant());
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_deliveries
    USING (tenant_id = connvault_current_tenant()) WITH CHECK (tenant_id = connvault_current_tenant());

-- Writes one event and its deliveries, if any enabled endpoint of the tenant wants this type. SECURITY INVOKER:
-- it runs as whoever changed the row, inside that tenant's transaction, so row-level security holds.
CREATE FUNCTION connvault_emit_event(p_tenant uuid, p_type text, p_subject uuid, p_data jsonb) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, public
    AS $$
    DECLARE
        event_id uuid;
    BEGIN
        IF NOT EXISTS (
            SELECT 1 FROM webhook_endpoints e
            WHERE e.tenant_id = p_tenant AND e.enabled AND p_type = ANY (e.event_types)
        ) THEN
            RETURN;
        END IF;
        INSERT INTO webhook_events (tenant_id, type, subject_id, data)
            VALUES (p_tenant, p_type, p_subject, p_data) RETURNING id INTO event_id;
        INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, subject_id)
            SELECT p_tenant, e.id, event_id, p_subject FROM webhook_endpoints e
            WHERE e.tenant_id = p_tenant AND e.enabled AND p_type = ANY (e.event_types)
            ORDER BY e.id;
    END
    $$;
COMMENT ON FUNCTION connvault_emit_event(uuid, text, uuid, jsonb) IS
    'The outbox write: one event and a delivery per enabled endpoint subscribed to its type; nothing when none is.';

-- Which event a change of a connection is, in order of precedence; NULL when it is none.
CREATE FUNCTION connvault_connection_event() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, public
    AS $$
    DECLARE
        r connections;
        kind text;
        slug text;
    BEGIN
        IF TG_OP = 'DELETE' THEN
            r := OLD;
            -- A connection deleted with its tenant: the tenant's endpoints and events go too.
            IF NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = OLD.tenant_id) THEN
                RETURN NULL;
            END IF;
            kind := 'connection.deleted';
        ELSE
            r := NEW;
            IF NEW.status = 'pending' THEN
                RETURN NULL;  -- not usable yet (a grant waiting for confirmation)
            ELSIF TG_OP = 'INSERT' OR OLD.status = 'pending' THEN
                kind := 'connection.created';
            ELSIF NEW.granted_at IS DISTINCT FROM OLD.granted_at THEN
                kind := 'connection.reconnected';
            ELSIF NEW.status = 'needs_reauth' AND OLD.status <> 'needs_reauth' THEN
                kind := 'connection.needs_reauth';
            ELSIF NEW.refresh_failures > OLD.refresh_failures THEN
                kind := 'connection.refresh_failed';
            ELSIF NEW.status = 'expired' AND OLD.status <> 'expired' THEN
                kind := 'connection.expired';
            ELSIF NEW.status = 'active' AND OLD.status IN ('error', 'expired') THEN
                kind := 'connection.recovered';
            ELSIF NEW.status = 'active' AND NEW.refresh_failures = 0 AND OLD.refresh_failures > 0 THEN
                kind := 'connection.recovered';
            ELSE
                RETURN NULL;
            END IF;
        END IF;
        SELECT p.slug INTO slug FROM providers p WHERE p.id = r.provider_id;
        PERFORM connvault_emit_event(
            r.tenant_id,
            kind,
            r.id,
            jsonb_build_object(
                'connection_id', r.id,
                'provider', slug,
                'end_user_id', r.end_user_id,
                'alias', r.alias,
                'status', CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE r.status END,
                'error_code', CASE WHEN kind IN ('connection.refresh_failed', 'connection.needs_reauth',
                                                 'connection.expired') THEN r.last_error_code END,
                'attempt', CASE WHEN kind = 'connection.refresh_failed' THEN r.refresh_failures END,
                'next_retry_at', CASE WHEN kind = 'connection.refresh_failed' THEN r.next_refresh_at END,
                'granted_at', r.granted_at,
                'expires_at', r.expires_at
            )
        );
        RETURN NULL;
    END
    $$;
COMMENT ON FUNCTION connvault_connection_event() IS
    'Trigger: turns a committed change of a connection''s state into an outbox event (see migration 0070).';

CREATE TRIGGER connections_events_insert_delete AFTER INSERT OR DELETE ON connections
    FOR EACH ROW EXECUTE FUNCTION connvault_connection_event();
-- The WHEN clause keeps the function out of every update that is not an event: a successful refresh of a
-- healthy connection, a lease taken or released, last_used_at.
CREATE TRIGGER connections_events_update AFTER UPDATE ON connections
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.granted_at IS DISTINCT FROM NEW.granted_at
          OR NEW.refresh_failures > OLD.refresh_failures
          OR (NEW.refresh_failures = 0 AND OLD.refresh_failures > 0))
    EXECUTE FUNCTION connvault_connection_event();

-- The sender's claim across tenants: leases due deliveries (SKIP LOCKED) and returns ids only. Per endpoint it
-- takes at most p_per_endpoint minus the deliveries already in flight there (across all senders), only one
-- while the endpoint's circuit is half open, and none while it is open. A delivery waits while an earlier one of
-- its subject is pending for the same endpoint, so each endpoint sees a connection's events in order.
CREATE FUNCTION connvault_claim_webhook_deliveries(
        p_now timestamptz, p_endpoints integer, p_per_endpoint integer, p_circuit_threshold integer,
        p_owner uuid, p_lease_until timestamptz)
    RETURNS TABLE (id uuid, tenant_id uuid, endpoint_id uuid)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        WITH due AS (
            -- An idle outbox is one empty range scan of the partial index, however many endpoints exist.
            SELECT d.endpoint_id, min(d.seq) AS oldest FROM webhook_deliveries d
            WHERE d.status = 'pending' AND d.next_attempt_at <= p_now
            GROUP BY d.endpoint_id
        ),
        ready AS (
            SELECT e.id, due.oldest, e.consecutive_failures >= p_circuit_threshold AS half_open,
                   (SELECT count(*) FROM webhook_deliveries l
                    WHERE l.endpoint_id = e.id AND l.status = 'pending' AND l.lease_until > p_now) AS in_flight
            FROM due JOIN webhook_endpoints e ON e.id = due.endpoint_id
            WHERE e.enabled AND (e.circuit_open_until IS NULL OR e.circuit_open_until <= p_now)
        ),
        picked AS (
            SELECT due.id FROM (
                SELECT r.* FROM ready r ORDER BY r.oldest LIMIT p_endpoints
            ) r
            CROSS JOIN LATERAL (
                SELECT d.id FROM webhook_deliveries d
                WHERE d.endpoint_id = r.id AND d.status = 'pending' AND d.next_attempt_at <= p_now
                  AND (d.lease_until IS NULL OR d.lease_until <= p_now)
                  AND NOT EXISTS (
                      SELECT 1 FROM webhook_deliveries o
                      WHERE o.endpoint_id = d.endpoint_id AND o.subject_id = d.subject_id
                        AND o.status = 'pending' AND o.seq < d.seq)
                ORDER BY d.seq
                LIMIT greatest(0, CASE WHEN r.half_open THEN 1 ELSE p_per_endpoint END - r.in_flight)
                FOR UPDATE OF d SKIP LOCKED
            ) due
        )
        UPDATE webhook_deliveries d SET lease_until = p_lease_until, lease_owner = p_owner
        FROM picked WHERE d.id = picked.id
        RETURNING d.id, d.tenant_id, d.endpoint_id
    $$;
COMMENT ON FUNCTION connvault_claim_webhook_deliveries(timestamptz, integer, integer, integer, uuid, timestamptz) IS
    'The webhook sender''s claim across tenants: leases due deliveries in order per subject, bounded per endpoint, '
    'and returns ids only. Each delivery is then sent under its own tenant.';

-- Retention: deliveries that are over (delivered or failed) and older than the cut-off go, then events no delivery
-- names any more. Across tenants, in bounded batches; returns how many deliveries went.
CREATE FUNCTION connvault_purge_webhook_history(p_before timestamptz, p_limit integer) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
    DECLARE
        purged integer;
    BEGIN
        DELETE FROM webhook_deliveries d WHERE d.id IN (
            SELECT o.id FROM webhook_deliveries o
            WHERE o.status <> 'pending' AND o.created_at < p_before
            LIMIT p_limit
        );
        GET DIAGNOSTICS purged = ROW_COUNT;
        DELETE FROM webhook_events e WHERE e.id IN (
            SELECT v.id FROM webhook_events v
            WHERE v.occurred_at < p_before
              AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = v.id)
            LIMIT p_limit
        );
        RETURN purged;
    END
    $$;
COMMENT ON FUNCTION connvault_purge_webhook_history(timestamptz, integer) IS
    'Retention of the outbox across tenants: finished deliveries and their events older than the cut-off.';
