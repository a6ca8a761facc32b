-- auth: OAuth 2.0 clients, citizens' local accounts, grants, codes, tokens and signing keys.

CREATE TABLE oauth_clients (
    client_id     text PRIMARY KEY,
    name          text NOT NULL,
    -- 'client_secret' (basic or post), 'private_key_jwt' (RFC 7523) or 'none' (public, PKCE)
    auth_method   text NOT NULL CHECK (auth_method IN ('client_secret', 'private_key_jwt', 'none')),
    secret_hash   text,
    jwks          jsonb,
    redirect_uris text[] NOT NULL DEFAULT '{}',
    scopes        text[] NOT NULL,
    grant_types   text[] NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz,
    CHECK ((auth_method = 'client_secret') = (secret_hash IS NOT NULL)),
    CHECK ((auth_method = 'private_key_jwt') = (jwks IS NOT NULL))
);

CREATE TABLE citizens (
    user_id       uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    display_name  text NOT NULL,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);

-- One authorization: a code exchange or a client_credentials issuance, and every token
-- that descends from it through refreshes. Revoking the grant revokes the whole family.
CREATE TABLE oauth_grants (
    grant_id   uuid PRIMARY KEY,
    client_id  text NOT NULL REFERENCES oauth_clients,
    user_id    uuid REFERENCES citizens,
    scope      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE oauth_codes (
    code_hash      text PRIMARY KEY,
    grant_id       uuid NOT NULL REFERENCES oauth_grants,
    client_id      text NOT NULL REFERENCES oauth_clients,
    user_id        uuid NOT NULL REFERENCES citizens,
    redirect_uri   text NOT NULL,
    scope          text NOT NULL,
    code_challenge text NOT NULL,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz
);

-- Access tokens are JWTs; this table knows their ids for introspection and revocation.
CREATE TABLE oauth_access_tokens (
    jti        text PRIMARY KEY,
    grant_id   uuid NOT NULL REFERENCES oauth_grants,
    client_id  text NOT NULL REFERENCES oauth_clients,
    user_id    uuid REFERENCES citizens,
    scope      text NOT NULL,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX oauth_access_tokens_grant_idx ON oauth_access_tokens (grant_id);
CREATE INDEX oauth_access_tokens_revoked_idx ON oauth_access_tokens (revoked_at)
    WHERE revoked_at IS NOT NULL;

CREATE TABLE oauth_refresh_tokens (
    token_hash text PRIMARY KEY,
    grant_id   uuid NOT NULL REFERENCES oauth_grants,
    client_id  text NOT NULL REFERENCES oauth_clients,
    user_id    uuid REFERENCES citizens,
    scope      text NOT NULL,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz
);
CREATE INDEX oauth_refresh_tokens_grant_idx ON oauth_refresh_tokens (grant_id);

-- `jti`s of private_key_jwt client assertions seen, so each assertion works once.
CREATE TABLE oauth_assertion_jtis (
    client_id  text NOT NULL,
    jti        text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);

-- Token signing keys. A key is published from created_at, signs from signs_from until the
-- next key's signs_from, and stays published until the tokens it signed have expired.
CREATE TABLE oauth_signing_keys (
    kid         text PRIMARY KEY,
    alg         text NOT NULL,
    private_jwk jsonb NOT NULL,
    public_jwk  jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    signs_from  timestamptz NOT NULL
);

-- Secrets the hub makes for itself (session cookie signing), shared by all replicas.
CREATE TABLE hub_secrets (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
