-- auth: citizens' sign-in sessions ended by signing out, and the consents page's lookup.
--
-- A session lives in a signed cookie (auth/session.py) carrying a random session id. Signing
-- out records the id's hash here until every cookie that carries it has expired, so a copy
-- of the cookie stops working too; each hub process re-reads the ids every few seconds.
CREATE TABLE citizen_sessions_ended (
    sid_hash   text PRIMARY KEY,
    user_id    uuid NOT NULL,
    ended_at   timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX citizen_sessions_ended_expires_idx ON citizen_sessions_ended (expires_at);

-- The apps a citizen approved (auth/consents.py).
CREATE INDEX oauth_grants_user_idx ON oauth_grants (user_id, client_id) WHERE user_id IS NOT NULL;
