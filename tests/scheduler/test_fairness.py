"""One tenant's slow provider must not stop everyone's scheduled refresh (issue 23, item 1).

Measured before: a victim tenant's 40 due connections on a fast provider were refreshed in 0.8 s alone, and 0/40
in a 45 s run beside another tenant's 200 connections on a provider answering in 3 s. Claims took the due set
by expiry across all tenants, and jobs queued behind the slow provider's cap held back every new claim. Now
tenants take turns in each claim, and a provider whose queue is full is left out of the next claims.
``bench/fairness_bench.py`` runs the issue's own figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from uuid import UUID

import pytest

from connvault.db.connections import Claim
from connvault.oauth.client import OAuthClient
from connvault.services.claims import Claimer
from connvault.services.scheduler import refresh_due
from tests.scheduler.conftest import FAST, POLICY, Site, forever, held_leases, load
from tests.support.database import TestDatabase


def test_a_tenant_on_a_saturated_slow_provider_does_not_hold_back_another_tenants_refreshes(
    make_site: Callable[..., Site], oauth: OAuthClient, db: TestDatabase
) -> None:
    # Given a tenant with 40 connections due first on a provider answering in 1.5 s (capped at 2), and a victim
    # tenant with 20 due a little later on a fast provider
    noisy = make_site(max_concurrent_refreshes=2)
    victim = make_site()
    # (minted one at a time: the demo's max_in_flight would count the setup's parallel code exchanges too)
    noisy.connect(40, expires_in=timedelta(minutes=2), mint_threads=1)
    victim_ids = victim.connect(20, expires_in=timedelta(minutes=10))
    noisy.demo.configure(latency_seconds=1.5)

    # When one run of four threads has eight seconds
    ends = time.monotonic() + 8.0
    report = refresh_due(
        remaining_ms=lambda: int((ends - time.monotonic()) * 1000),
        config=replace(FAST, deadline_margin_ms=500),
        policy=POLICY,
        oauth=oauth,
    )

    # Then the victim was refreshed completely within the run, while the slow provider got its cap's worth
    assert victim.refresh_calls() == 20
    assert all(load(victim.tenant_id, ident).last_refresh_at is not None for ident in victim_ids)
    assert noisy.refresh_calls() >= 4
    assert noisy.demo.stats().max_in_flight <= 2
    assert report.refreshed == victim.refresh_calls() + noisy.refresh_calls()
    assert held_leases(db) == 0


def test_while_every_provider_with_work_is_saturated_the_run_does_not_ask_again(
    make_site: Callable[..., Site], oauth: OAuthClient, db: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim that left out every provider with due connections finds nothing; repeated after each finished job,
    it was most of a run's statements (1,306 empty claims for 2,000 refreshes in ``bench/refresh_bench.py``)."""
    # Given one provider, capped at 2, with 16 due connections
    site = make_site(max_concurrent_refreshes=2)
    site.connect(16, expires_in=timedelta(minutes=2), mint_threads=1)
    site.demo.configure(latency_seconds=0.05)
    claims: list[tuple[int, int]] = []
    claim = Claimer.claim

    def counted(self: Claimer, room: int, skip_providers: Sequence[UUID] = ()) -> list[Claim]:
        found = claim(self, room, skip_providers)
        claims.append((len(skip_providers), len(found)))
        return found

    monkeypatch.setattr(Claimer, "claim", counted)

    # When a run refreshes them all
    report = refresh_due(remaining_ms=forever, config=FAST, policy=POLICY, oauth=oauth)

    # Then a claim that found nothing while the provider was saturated came at most once after each that found some
    assert report.refreshed == 16
    empty_while_saturated = sum(1 for skipped, found in claims if skipped and not found)
    assert empty_while_saturated <= sum(1 for _, found in claims if found)
    assert held_leases(db) == 0
