"""Bearer API tokens: create users and tokens, and resolve a presented token to its user.

Only the sha256 of a token is stored; the secret is shown once, when it is created. Tokens
look like ``hwnas_<43 url-safe characters>``; `ApiToken.prefix` keeps the first characters so
that a user can tell their tokens apart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
import time
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from api.singleflight import SingleFlight
from store.db import Database, retrying, utcnow
from store.models import ApiToken, User

TOKEN_PREFIX = "hwnas_"
_SHOWN = 12
_TOUCH_EVERY = dt.timedelta(minutes=1)


def hash_token(token: str) -> str:
    """The stored form of a token: its sha256 (hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(db: Database, name: str, *, is_admin: bool = False) -> User:
    """Add a user.

    Raises:
        ValueError: the name is empty, too long, or taken.
    """
    name = name.strip()
    if not name or len(name) > 120:
        raise ValueError(f"user name must be 1-120 characters, got {name!r}")
    try:
        with db.session() as s:
            user = User(name=name, is_admin=is_admin)
            s.add(user)
            s.flush()
            return user
    except IntegrityError:
        raise ValueError(f"user name {name!r} is taken") from None


def get_user(db: Database, name: str) -> User:
    """The user called `name`.

    Raises:
        KeyError: no such user.
    """
    with db.reader() as s:
        user = s.scalars(select(User).where(User.name == name)).one_or_none()
    if user is None:
        raise KeyError(f"no user named {name!r}")
    return user


def user_names(db: Database) -> list[str]:
    """The names of the store's users, oldest first."""
    with db.reader() as s:
        return list(s.scalars(select(User.name).order_by(User.id)))


def create_token(db: Database, user: str | int, *, name: str = "") -> str:
    """Create an API token for a user (by name or id); returns the secret, which is not stored.

    Raises:
        KeyError: no such user.
    """
    user_id = get_user(db, user).id if isinstance(user, str) else user
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.session() as s:
        if s.get(User, user_id) is None:
            raise KeyError(f"no user with id {user_id}")
        s.add(ApiToken(user_id=user_id, name=name, prefix=secret[:_SHOWN], token_hash=hash_token(secret)))
    return secret


def revoke_token(db: Database, token: str) -> bool:
    """Revoke a token (by its secret); returns whether one was revoked."""
    with db.session() as s:
        result = s.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def authenticate(db: Database, token: str) -> User | None:
    """The user a token belongs to, or None for an unknown or revoked token.

    Records when the token was last used (at most once a minute, to keep reads cheap).
    """
    with db.reader() as s:
        row = s.execute(
            select(User, ApiToken.id, ApiToken.last_used_at)
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
        ).one_or_none()
    if row is None:
        return None
    user, token_id, last_used = row
    now = utcnow()
    if last_used is None or now - last_used > _TOUCH_EVERY:

        def touch() -> None:
            with db.session() as s:
                s.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))

        retrying(touch, attempts=3)
    return user


def ensure_first_user(db: Database, name: str = "admin") -> str | None:
    """On a store with no users, create admin `name` and return a new token for it (shown once); else None."""
    with db.reader() as s:
        if s.scalars(select(User.id).limit(1)).first() is not None:
            return None
    user = create_user(db, name, is_admin=True)
    return create_token(db, user.id, name="first start")


class TokenCache:
    """Recently authenticated tokens (by hash) and their users.

    Saves the database lookup on every request of a busy client. An entry is fresh for `ttl_s`;
    for another `ttl_s` after that, one request looks the token up again while the others keep
    using the entry (so a busy client does not send a burst of lookups at every expiry). A revoked
    token therefore keeps working for at most ``2 * ttl_s`` in a process that has just seen it.
    Unknown tokens are never cached.

    Args:
        ttl_s: how long an entry is fresh (0 disables the cache).
        max_entries: entries kept; the oldest go first.
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self, ttl_s: float = 5.0, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self.max_entries = max_entries
        self._items: dict[str, tuple[float, User]] = {}
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()
        self._lookups: SingleFlight[str, User | None] = SingleFlight()

    def cached(self, token: str) -> User | None:
        """The token's user from the cache (no database access), or None when it must be looked up."""
        key = hash_token(token)
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            age = self._clock() - hit[0]
            if age < self.ttl_s or (age < 2 * self.ttl_s and key in self._refreshing):
                return hit[1]
            if age < 2 * self.ttl_s:
                self._refreshing.add(key)  # this caller looks it up; the others keep the entry meanwhile
            return None

    async def user(self, db: Database, token: str) -> User | None:
        """The token's user: from the cache, else from one lookup in the thread pool shared by concurrent callers."""
        hit = self.cached(token)
        if hit is not None:
            return hit
        return await self._lookups.run(hash_token(token), lambda: run_in_threadpool(self.refresh, db, token))

    def refresh(self, db: Database, token: str) -> User | None:
        """Look the token up (`authenticate`) and update its entry; call it when `cached` returned None.

        It must not consult the cache again: `cached` has just marked this caller as the one that
        refreshes, and only this call clears that mark.
        """
        key, now = hash_token(token), self._clock()
        user: User | None = None
        try:
            user = authenticate(db, token)
        finally:
            with self._lock:
                self._refreshing.discard(key)
                if user is None:
                    self._items.pop(key, None)
                elif self.ttl_s > 0:
                    if key not in self._items and len(self._items) >= self.max_entries:
                        self._items.pop(next(iter(self._items)))
                    self._items[key] = (now, user)
        return user
