-- Migration 3: the tool and the pipelines share each request's life through `status`.
--   open          written by the pipelines (the default, and every row written before this)
--   acknowledged  set by the tool: it has taken the request (assigned it, queued it)
--   fulfilled     set by the tool: it has done what was asked (a judgment, a review)
--   withdrawn     set by the pipelines: the request is no longer wanted (the task settled,
--                 or new evidence replaced it by a newer request); only an open or
--                 acknowledged request is withdrawn, never a fulfilled one
-- `closed_at` is when a request was fulfilled (the tool sets it) or withdrawn. `updated_at`
-- now follows every change (the same trigger as the tool's own tables), so a poller reads
-- `updated_at > its last position` on the index below. Applied after 002, idempotently.

ALTER TABLE task_requests ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'open'
    CHECK (status IN ('open', 'acknowledged', 'fulfilled', 'withdrawn'));
ALTER TABLE task_requests ADD COLUMN IF NOT EXISTS closed_at timestamptz;

CREATE INDEX IF NOT EXISTS task_requests_updated_at ON task_requests (updated_at);
CREATE INDEX IF NOT EXISTS annotator_actions_updated_at ON annotator_actions (updated_at);
CREATE INDEX IF NOT EXISTS task_requests_open ON task_requests (project, task_id)
    WHERE status IN ('open', 'acknowledged');

DO $$
DECLARE name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['task_requests', 'annotator_actions'] LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_trigger
            WHERE tgname = name || '_touch' AND tgrelid = to_regclass(name)
        ) THEN
            EXECUTE format(
                'CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION touch_updated_at()',
                name || '_touch', name
            );
        END IF;
    END LOOP;
END;
$$;

INSERT INTO annotation_pipelines_migrations (version, name) VALUES (3, '003_request_status')
    ON CONFLICT (version) DO NOTHING;
