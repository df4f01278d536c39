-- 0094: the device poller leases no more sessions than it has free threads, and each thread goes to the tenant
-- with the fewest polls in flight (an outside probe on 2026-11-30). Under 0061 a claim took the 50 sessions due
-- first, whoever's they were, and the poller's two threads worked through all of them before claiming again: 30
-- sessions of one tenant at a custom provider answering authorization_pending after 4 s held the poller for a
-- minute at a time, and another tenant's approved session became a connection after 63.6 s instead of 5.1 s.
-- Now the poller passes its free threads as p_limit, and the due sessions are ordered by what their tenant would
-- have in flight once given the thread: the polls it has leased now (by any caller) plus its earlier picks in
-- this claim; a tenant with nothing in flight goes first, so another tenant's session waits at most for one
-- thread to free, never for a backlog. The model is the webhook sender's claim (0088).
-- connvault_next_device_poll now answers when a session can next be claimed (its lease counted), not only when
-- it is next due, so a poller whose threads are all on slow polls does not query in a loop meanwhile.

CREATE OR REPLACE FUNCTION connvault_claim_device_polls(
        p_now timestamptz, p_limit integer, p_owner uuid, p_lease_until timestamptz)
    RETURNS TABLE (id uuid, tenant_id uuid)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        WITH due AS (
            SELECT d.id, d.tenant_id, d.next_poll_at,
                   row_number() OVER (PARTITION BY d.tenant_id ORDER BY d.next_poll_at) AS turn
            FROM device_sessions d
            WHERE d.status = 'pending' AND d.next_poll_at <= p_now
              AND (d.poll_lease_until IS NULL OR d.poll_lease_until <= p_now)
        ),
        busy AS (
            -- What each tenant taking part has in flight: its sessions leased now, by the poller or its own GET.
            SELECT d.tenant_id, count(*) AS in_flight FROM device_sessions d
            WHERE d.status = 'pending' AND d.poll_lease_until > p_now
              AND d.tenant_id IN (SELECT due.tenant_id FROM due)
            GROUP BY d.tenant_id
        ),
        picked AS (
            SELECT due.id FROM due LEFT JOIN busy b ON b.tenant_id = due.tenant_id
            ORDER BY coalesce(b.in_flight, 0) + due.turn, due.next_poll_at
            LIMIT p_limit
        ),
        locked AS (
            -- Rechecked under the row lock: a GET may have polled a picked session since the snapshot.
            SELECT d.id FROM device_sessions d JOIN picked ON picked.id = d.id
            WHERE d.status = 'pending' AND d.next_poll_at <= p_now
              AND (d.poll_lease_until IS NULL OR d.poll_lease_until <= p_now)
            FOR UPDATE OF d SKIP LOCKED
        )
        UPDATE device_sessions d
        SET poll_lease_until = p_lease_until, poll_lease_owner = p_owner,
            next_poll_at = p_now + make_interval(secs => d.interval_seconds)
        FROM locked WHERE d.id = locked.id
        RETURNING d.id, d.tenant_id
    $$;
COMMENT ON FUNCTION connvault_claim_device_polls(timestamptz, integer, uuid, timestamptz) IS
    'The device poller''s claim across tenants: leases at most p_limit pending sessions due for a poll (the '
    'poller''s free threads; SKIP LOCKED), each to the tenant with the fewest polls in flight (migration 0094), '
    'moves their next poll one interval ahead, and returns ids only. Each poll then runs under its own tenant.';

CREATE OR REPLACE FUNCTION connvault_next_device_poll() RETURNS timestamptz
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        SELECT min(greatest(d.next_poll_at, d.poll_lease_until))  -- greatest skips a NULL lease
        FROM device_sessions d WHERE d.status = 'pending'
    $$;
COMMENT ON FUNCTION connvault_next_device_poll() IS
    'When the poller has work next: the earliest time a pending session is due and not leased, across tenants '
    '(migration 0094); NULL when none is pending (the poller stops). A time only, nothing of any tenant.';
