-- waste tags: the keys that sign QR labels and personalise NFC tags, and the tags on bins.
-- docs/waste-tags.md explains both kinds.

-- A key: Ed25519 (signs QR labels) or an AES-128 master key (NFC tags' keys are
-- diversified from it). `private_key` is sealed with AES-256-GCM under IEUM_WASTE_TAG_SECRET,
-- never stored in clear. One key of each algorithm makes new tags (retired_at null); a
-- retired key still verifies the tags it made; a revoked one verifies nothing.
CREATE TABLE waste_tag_keys (
    key_id      int GENERATED ALWAYS AS IDENTITY PRIMARY KEY CHECK (key_id <= 65535),
    algorithm   text NOT NULL CHECK (algorithm IN ('Ed25519', 'AES128-AN10922')),
    public_key  bytea CHECK (length(public_key) = 32),
    private_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz,
    revoked_at  timestamptz,
    CHECK ((algorithm = 'Ed25519') = (public_key IS NOT NULL)),
    CHECK (revoked_at IS NULL OR retired_at IS NOT NULL)
);
CREATE UNIQUE INDEX waste_tag_keys_current_idx ON waste_tag_keys (algorithm)
    WHERE retired_at IS NULL;

-- A tag on a bin: a printed QR label or an NTAG 424 DNA (its 7-byte UID in hex). A bin has
-- at most one live tag of each kind; issuing a new one revokes the old. `last_counter` is
-- the highest SUN read counter accepted (NFC): a tap must show a higher one.
CREATE TABLE waste_tags (
    tag_id        uuid PRIMARY KEY,
    bin_id        uuid NOT NULL REFERENCES waste_bins,
    kind          text NOT NULL CHECK (kind IN ('qr', 'nfc')),
    key_id        int NOT NULL REFERENCES waste_tag_keys,
    uid           text CHECK (uid ~ '^[0-9A-F]{14}$'),
    last_counter  int NOT NULL DEFAULT -1,
    issued_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    revoke_reason text,
    CHECK ((kind = 'nfc') = (uid IS NOT NULL))
);
CREATE UNIQUE INDEX waste_tags_live_idx ON waste_tags (bin_id, kind) WHERE revoked_at IS NULL;
CREATE UNIQUE INDEX waste_tags_live_uid_idx ON waste_tags (uid) WHERE revoked_at IS NULL;
CREATE INDEX waste_tags_uid_idx ON waste_tags (uid, issued_at);
CREATE INDEX waste_tags_revoked_idx ON waste_tags (tag_id) WHERE revoked_at IS NOT NULL;
