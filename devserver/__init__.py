"""Development-only tooling: the local demo stack behind ``make run`` and the fake OAuth provider the
tests talk to. Never packaged into the Lambda layer."""
