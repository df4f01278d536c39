-- 0081 down: the application keeps webhook_endpoints.updated_at again.
DROP TRIGGER webhook_endpoints_updated_at ON webhook_endpoints;
