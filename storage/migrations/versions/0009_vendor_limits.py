"""Vendor limits shared by every process on one PostgreSQL database: concurrency slots and request windows.

SQLite runs one process, which counts in memory (integrations/rate_windows.py), so nothing is created there.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# One statement per reservation: serialise the key with a transaction-scoped advisory lock, count every window
# backwards from the newest request, and book only if all admit one. clock_timestamp() is read after the lock, so
# the database's clock orders every process's requests. Rows carry their own expiry (at + the longest window), so a
# rare sweep can drop idle keys (a bot talks to thousands of chats) without knowing their windows.
RESERVE_FUNCTION = """
CREATE OR REPLACE FUNCTION slotwise_vendor_reserve(p_key text, p_windows double precision[], p_counts integer[])
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz;
    longest double precision := 0;
    wait double precision := 0;
    nth timestamptz;
    i integer;
BEGIN
    PERFORM pg_advisory_xact_lock(7301, hashtext(p_key));
    t := clock_timestamp();
    FOR i IN 1 .. coalesce(array_length(p_windows, 1), 0) LOOP
        longest := greatest(longest, p_windows[i]);
        SELECT at INTO nth FROM vendor_requests
            WHERE key = p_key AND at > t - make_interval(secs => p_windows[i])
            ORDER BY at DESC OFFSET p_counts[i] - 1 LIMIT 1;
        IF FOUND THEN
            wait := greatest(wait, extract(epoch FROM nth + make_interval(secs => p_windows[i]) - t));
        END IF;
    END LOOP;
    IF wait > 0 THEN
        RETURN wait;
    END IF;
    DELETE FROM vendor_requests WHERE key = p_key AND at <= t - make_interval(secs => longest);
    INSERT INTO vendor_requests (key, at, expires_at) VALUES (p_key, t, t + make_interval(secs => longest));
    IF random() < 0.001 THEN
        DELETE FROM vendor_requests WHERE expires_at < t;
        DELETE FROM vendor_slots WHERE lease_expires_at < t - interval '1 hour';
    END IF;
    RETURN 0;
END
$$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE TABLE vendor_slots (
            key varchar(400) NOT NULL,
            slot integer NOT NULL,
            holder varchar(40) NOT NULL,
            lease_expires_at timestamptz NOT NULL,
            PRIMARY KEY (key, slot)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE vendor_requests (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            key varchar(400) NOT NULL,
            at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX ix_vendor_requests_key_at ON vendor_requests (key, at)")
    op.execute(RESERVE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS slotwise_vendor_reserve(text, double precision[], integer[])")
    op.execute("DROP TABLE IF EXISTS vendor_requests")
    op.execute("DROP TABLE IF EXISTS vendor_slots")
