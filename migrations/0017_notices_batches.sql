-- notices: an app may take several notices per webhook request (a batch, each notice with
-- its own event id), up to the number it registered; 1 is one notice per request.
ALTER TABLE notice_webhooks
    ADD COLUMN max_batch int NOT NULL DEFAULT 1 CHECK (max_batch BETWEEN 1 AND 100);
