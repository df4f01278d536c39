-- 0011 down: no shared request counts; each process's own token bucket still limits a tenant.

DROP FUNCTION connvault_count_requests(uuid, integer, integer);
DROP TABLE tenant_request_counts;
