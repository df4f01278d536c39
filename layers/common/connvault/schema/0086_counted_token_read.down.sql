-- 0086 down: the read carries no count; the rate limiter's shared count goes through connvault_count_requests alone.

DROP FUNCTION connvault_token_read_counting(uuid, uuid, integer, integer);
