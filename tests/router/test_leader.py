"""Leader election over a fake Lease API: renewal, takeover after expiry, conflicts."""

from router.leader import Conflict, LeaderElector, Lease


class FakeLeases:
    def __init__(self):
        self.lease = None
        self.version = 0

    def get(self):
        return self.lease

    def create(self, lease):
        if self.lease is not None:
            raise Conflict()
        return self._store(lease)

    def replace(self, lease):
        if self.lease is None or lease.version != self.lease.version:
            raise Conflict()
        return self._store(lease)

    def _store(self, lease):
        self.version += 1
        self.lease = Lease(lease.holder, lease.renew_time, lease.duration_seconds, lease.transitions, str(self.version))
        return self.lease


def test_one_leader_renews_and_a_peer_takes_over_after_expiry():
    now = [1000.0]
    api = FakeLeases()
    a = LeaderElector("router-a", api, lambda: now[0], duration_seconds=15)
    b = LeaderElector("router-b", api, lambda: now[0], duration_seconds=15)
    assert a.try_acquire_or_renew() is True
    assert b.try_acquire_or_renew() is False
    now[0] += 10
    assert a.try_acquire_or_renew() is True  # renewed
    now[0] += 14
    assert b.try_acquire_or_renew() is False  # a renewed 14 s ago: still valid
    now[0] += 2
    assert b.try_acquire_or_renew() is True  # expired: b takes over
    assert api.lease.holder == "router-b" and api.lease.transitions == 1
    assert a.try_acquire_or_renew() is False


def test_a_conflicting_write_means_not_leader():
    class Racing(FakeLeases):
        def replace(self, lease):
            raise Conflict()  # another replica wrote the Lease between our read and our write

    api = Racing()
    api.create(Lease("router-a", 0.0, 15))
    assert LeaderElector("router-b", api, lambda: 100.0).try_acquire_or_renew() is False
