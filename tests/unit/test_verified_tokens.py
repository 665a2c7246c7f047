"""The memory of checked tokens: what it returns, for how long, and how far it grows."""

from __future__ import annotations

import time

from blog.verified import VerifiedTokens


def test_a_remembered_token_is_known_until_it_expires():
    tokens: VerifiedTokens[int] = VerifiedTokens()
    tokens.remember("fresh", 7, time.time() + 60)
    tokens.remember("stale", 8, time.time() - 1)
    assert tokens.get("fresh") == 7
    assert tokens.get("stale") is None
    assert tokens.get("never-seen") is None


def test_the_memory_never_grows_past_its_capacity():
    tokens: VerifiedTokens[int] = VerifiedTokens(capacity=3)
    later = time.time() + 60
    for n in range(10):
        tokens.remember(f"token-{n}", n, later)
        assert len(tokens._known) <= 3
    assert tokens.get("token-9") == 9
