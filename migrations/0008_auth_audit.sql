-- auth: the audit log of reads of citizens' personal data, which the city exports
-- (`ieum audit export`). Every domain writes to it through auth/audit.py.

CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    client_id    text,               -- the app or terminal that read (NULL: no token)
    user_id      uuid,               -- the citizen or official it acted for, if any
    client_ip    text,               -- where the request came from (접속지 정보)
    action       text NOT NULL,      -- what was done: 'payer.read'
    subject_type text NOT NULL,      -- whose data, by kind: 'tax_bill'
    subject      text NOT NULL,      -- and by id: the bill's 전자납부번호
    fields       text[] NOT NULL,    -- the personal fields shown: {name,address}
    operation    text,               -- the GraphQL operation's name, or the command
    request_id   text                -- the request's X-Request-Id, to match other logs
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_subject_idx ON audit_log (subject_type, subject);

-- Append-only: rows are never changed, and leave only through audit_prune, which sets
-- ieum.audit_prune for the length of its own DELETE. This guards against code and
-- mistakes; a database owner can still drop the trigger, so grant the hub's role no more.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('ieum.audit_prune', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only: % on audit_log is refused '
        '(old rows leave through audit_prune)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
-- Per statement, so a prune of a million rows runs the check once.
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Retention: delete up to max_rows rows older than `before`, oldest first; returns how
-- many. Call it until it returns less than max_rows (auth.audit.prune does), so no
-- statement runs long. Rows younger than two years are kept whatever `before` says: the
-- access records of a system holding 50,000 people's data or unique identifiers are kept
-- at least that long (개인정보의 안전성 확보조치 기준, 제8조).
CREATE FUNCTION audit_prune(before timestamptz, max_rows integer DEFAULT 10000)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    deleted integer;
BEGIN
    IF before > now() - interval '2 years' THEN
        RAISE EXCEPTION 'audit rows are kept two years: prune before % at the latest',
            now() - interval '2 years' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('ieum.audit_prune', 'on', true);
    DELETE FROM audit_log WHERE id IN (
        SELECT id FROM audit_log WHERE at < before ORDER BY at LIMIT max_rows
    );
    GET DIAGNOSTICS deleted = ROW_COUNT;
    PERFORM set_config('ieum.audit_prune', 'off', true);
    RETURN deleted;
END $$;
