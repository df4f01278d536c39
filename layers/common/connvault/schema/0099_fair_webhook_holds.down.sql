-- 0099 down: the claim and the release trigger as migration 0097 left them.

CREATE OR REPLACE FUNCTION connvault_release_next_webhook_delivery() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, public, pg_temp
    AS $$
    DECLARE
        head uuid;
        held timestamptz;
    BEGIN
        SELECT d.id, d.held_until INTO head, held FROM webhook_deliveries d
        WHERE d.endpoint_id = OLD.endpoint_id AND d.subject_id = OLD.subject_id AND d.status = 'pending'
        ORDER BY d.seq
        LIMIT 1;
        IF held IS NOT NULL THEN
            -- Never waits: a row locked now is being taken, ended or released by someone else; a hold missed
            -- here runs out by itself.
            UPDATE webhook_deliveries d SET held_until = NULL
            WHERE d.id = (SELECT h.id FROM webhook_deliveries h WHERE h.id = head AND h.held_until IS NOT NULL
                          FOR UPDATE SKIP LOCKED);
        END IF;
        RETURN NULL;
    END
    $$;
COMMENT ON FUNCTION connvault_release_next_webhook_delivery() IS
    'Trigger: a delivery left pending, so the first pending one of its subject and endpoint may go; its hold is '
    'cleared (migration 0097).';

CREATE OR REPLACE FUNCTION connvault_claim_webhook_deliveries(
        p_now timestamptz, p_endpoints integer, p_per_endpoint integer, p_circuit_threshold integer,
        p_owner uuid, p_lease_until timestamptz)
    RETURNS TABLE (id uuid, tenant_id uuid, endpoint_id uuid)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    -- Every read below is an index range in order, cut off by a LIMIT, or a lookup by key: that is what bounds the
    -- claim's cost, and the plan is made once per connection (a generic plan, PL/pgSQL's cache: planning this
    -- statement costs more than running it). Planned without the parameters' values, the planner may estimate that
    -- reading a small table whole, or a range whole with a bitmap before its LIMIT, costs less; neither is.
    SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_bitmapscan = off
    AS $$
    #variable_conflict use_column
    BEGIN
        RETURN QUERY
        WITH RECURSIVE queued (endpoint_id) AS (
            -- Each endpoint with anything pending, one index descent each (a loose index scan): an idle outbox is
            -- one empty descent, and a parked backlog costs its endpoint one step, not a row per delivery.
            -- (Ordered as webhook_deliveries_ready_idx is, all of it: no other index gives that order, so no other
            -- is read, whatever the planner makes of the table's statistics.)
            (SELECT d.endpoint_id FROM webhook_deliveries d WHERE d.status = 'pending'
             ORDER BY d.endpoint_id, greatest(d.next_attempt_at, d.held_until), d.seq LIMIT 1)
            UNION ALL
            SELECT (SELECT d.endpoint_id FROM webhook_deliveries d
                    WHERE d.status = 'pending' AND d.endpoint_id > q.endpoint_id
                    ORDER BY d.endpoint_id, greatest(d.next_attempt_at, d.held_until), d.seq LIMIT 1)
            FROM queued q WHERE q.endpoint_id IS NOT NULL
        ),
        leased AS (
            -- In flight, whichever sender leased it: a few rows, however large the backlog. The whole partial index
            -- (what senders lease, and leases a crashed sender left), filtered after it is read: planned without
            -- p_now, the planner takes lease_until > p_now for a third of the table and reads another index whole.
            SELECT l.tenant_id, l.endpoint_id FROM (
                SELECT l.tenant_id, l.endpoint_id, l.lease_until FROM webhook_deliveries l
                WHERE l.status = 'pending' AND l.lease_until IS NOT NULL
                OFFSET 0
            ) l
            WHERE l.lease_until > p_now
        ),
        eligible AS (
            -- Only these are looked into: enabled, circuit closed or due to half-open, room in flight. Each looked
            -- up by its key (LIMIT 1 keeps it a lookup per endpoint queued, never a read of every endpoint).
            SELECT e.id, e.tenant_id FROM queued q
            CROSS JOIN LATERAL (
                SELECT e.id, e.tenant_id, e.consecutive_failures FROM webhook_endpoints e
                WHERE e.id = q.endpoint_id AND e.enabled
                  AND (e.circuit_open_until IS NULL OR e.circuit_open_until <= p_now)
                LIMIT 1
            ) e
            WHERE (SELECT count(*) FROM leased l WHERE l.endpoint_id = e.id)
                  < CASE WHEN e.consecutive_failures >= p_circuit_threshold THEN 1 ELSE p_per_endpoint END
        ),
        firsts AS (
            -- Each eligible endpoint's first delivery it can send now: ready, not in flight, first of its subject.
            -- Read in the order deliveries became ready, stopping at the first; in flight ones (at most
            -- p_per_endpoint) and unheld waiting ones come before it, so a few more than that are read at most.
            SELECT e.id AS endpoint_id, e.tenant_id, f.id, f.ready_at, f.seq
            FROM eligible e
            CROSS JOIN LATERAL (
                SELECT r.id, r.ready_at, r.seq FROM (
                    SELECT d.id, d.seq, d.subject_id, d.lease_until, greatest(d.next_attempt_at, d.held_until) AS ready_at
                    FROM webhook_deliveries d
                    WHERE d.endpoint_id = e.id AND d.status = 'pending'
                      AND greatest(d.next_attempt_at, d.held_until) <= p_now
                    ORDER BY greatest(d.next_attempt_at, d.held_until), d.seq
                    LIMIT p_per_endpoint + 32
                ) r
                WHERE (r.lease_until IS NULL OR r.lease_until <= p_now)
                  AND NOT EXISTS (
                      SELECT 1 FROM webhook_deliveries o
                      WHERE o.endpoint_id = e.id AND o.subject_id = r.subject_id
                        AND o.status = 'pending' AND o.seq < r.seq)
                ORDER BY r.ready_at, r.seq
                LIMIT 1
            ) f
        ),
        waiting AS (
            -- What such a read passed over because it waits behind an earlier delivery of its subject (not in
            -- flight, before the endpoint's first sendable one, or among the first read when none was): held, so
            -- the next claims read past it no more. Nothing at all when an endpoint's first ready delivery can go.
            SELECT e.id AS endpoint_id, w.id, w.subject_id, w.seq
            FROM eligible e
            LEFT JOIN firsts f ON f.endpoint_id = e.id
            CROSS JOIN LATERAL (
                SELECT d.id, d.subject_id, d.seq, d.lease_until FROM webhook_deliveries d
                WHERE d.endpoint_id = e.id AND d.status = 'pending'
                  AND greatest(d.next_attempt_at, d.held_until) <= p_now
                  AND (greatest(d.next_attempt_at, d.held_until), d.seq)
                      < (coalesce(f.ready_at, 'infinity'), coalesce(f.seq, 9223372036854775807))
                ORDER BY greatest(d.next_attempt_at, d.held_until), d.seq
                LIMIT p_per_endpoint + 32
            ) w
            WHERE w.lease_until IS NULL OR w.lease_until <= p_now
        ),
        holds AS (
            -- Held, with what else of their subject is ready after them (a run queued behind one delivery goes out
            -- of the way in a few claims, not one read's worth at a time): 16 subjects, 256 of each read and 256
            -- held in all a claim at most. Each subject's behind the latest pending delivery of the subject before
            -- them, share-locked: skipped when another transaction holds that one, since it may be ending it and its
            -- release must see these holds.
            SELECT h.id FROM (
                SELECT w.endpoint_id, w.subject_id, min(w.seq) AS seq FROM waiting w GROUP BY 1, 2
                ORDER BY 3
                LIMIT 16
            ) s
            CROSS JOIN LATERAL (
                SELECT o.id FROM webhook_deliveries o
                WHERE o.endpoint_id = s.endpoint_id AND o.subject_id = s.subject_id
                  AND o.status = 'pending' AND o.seq < s.seq
                ORDER BY o.seq DESC
                LIMIT 1
                FOR SHARE OF o SKIP LOCKED
            ) ahead
            CROSS JOIN LATERAL (
                SELECT r.id FROM webhook_deliveries r
                WHERE r.endpoint_id = s.endpoint_id AND r.subject_id = s.subject_id
                  AND r.status = 'pending' AND r.seq >= s.seq
                ORDER BY r.seq
                LIMIT 256
            ) run
            CROSS JOIN LATERAL (
                SELECT d.id FROM webhook_deliveries d
                WHERE d.id = run.id AND d.status = 'pending' AND greatest(d.next_attempt_at, d.held_until) <= p_now
                  AND (d.lease_until IS NULL OR d.lease_until <= p_now)
                FOR UPDATE OF d SKIP LOCKED
            ) h
            LIMIT 256
        ),
        held AS (
            -- For ten leases (5 minutes at the default): read again after that at most, released before it as soon
            -- as what they wait for is done.
            UPDATE webhook_deliveries d SET held_until = p_now + 10 * (p_lease_until - p_now)
            WHERE d.id = ANY (ARRAY(SELECT h.id FROM holds h))
            RETURNING d.id
        ),
        busy AS (
            -- What each tenant has in flight, on any of its endpoints, whichever sender leased it.
            SELECT l.tenant_id, count(*) AS in_flight FROM leased l GROUP BY l.tenant_id
        ),
        ranked AS (
            SELECT f.endpoint_id FROM (
                SELECT f.*, row_number() OVER (PARTITION BY f.tenant_id ORDER BY f.ready_at, f.seq) AS turn
                FROM firsts f
            ) f
            LEFT JOIN busy b ON b.tenant_id = f.tenant_id
            ORDER BY coalesce(b.in_flight, 0) + f.turn, f.ready_at, f.seq
            LIMIT p_endpoints
        ),
        picked AS (
            -- Locked now, and checked again on the row as it is: another sender may have taken it meanwhile, and then
            -- this endpoint's next one goes instead.
            SELECT due.id FROM ranked r
            CROSS JOIN LATERAL (
                SELECT d.id FROM (
                    SELECT c.id, greatest(c.next_attempt_at, c.held_until) AS ready_at, c.seq
                    FROM webhook_deliveries c
                    WHERE c.endpoint_id = r.endpoint_id AND c.status = 'pending'
                      AND greatest(c.next_attempt_at, c.held_until) <= p_now
                    ORDER BY greatest(c.next_attempt_at, c.held_until), c.seq
                    LIMIT p_per_endpoint + 32
                ) c
                CROSS JOIN LATERAL (
                    SELECT d.id FROM webhook_deliveries d
                    WHERE d.id = c.id AND d.status = 'pending' AND (d.lease_until IS NULL OR d.lease_until <= p_now)
                      AND NOT EXISTS (
                          SELECT 1 FROM webhook_deliveries o
                          WHERE o.endpoint_id = d.endpoint_id AND o.subject_id = d.subject_id
                            AND o.status = 'pending' AND o.seq < d.seq)
                    FOR UPDATE OF d SKIP LOCKED
                ) d
                ORDER BY c.ready_at, c.seq
                LIMIT 1
            ) due
        ),
        claimed AS (
            UPDATE webhook_deliveries d SET lease_until = p_lease_until, lease_owner = p_owner, held_until = NULL
            WHERE d.id = ANY (ARRAY(SELECT picked.id FROM picked))
            RETURNING d.id, d.tenant_id, d.endpoint_id
        )
        SELECT c.id, c.tenant_id, c.endpoint_id FROM claimed c;
    END
    $$;
COMMENT ON FUNCTION connvault_claim_webhook_deliveries(timestamptz, integer, integer, integer, uuid, timestamptz) IS
    'The webhook sender''s claim across tenants: leases due deliveries in order per subject, at most one per endpoint '
    'and p_endpoints in all (the sender''s free slots), bounded in flight per endpoint; driven from the endpoints '
    'with something pending, of which only enabled ones with a closed or half-open circuit and room are read, each '
    'up to its first sendable delivery, so a parked backlog costs one index descent per endpoint (migration 0097). '
    'Each slot goes to the tenant with the fewest deliveries in flight. Returns ids only; each delivery is then sent '
    'under its own tenant.';
