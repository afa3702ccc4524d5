-- Migration 7: a live run that wrote the DB and failed before its lake commit is retried on
-- the same state version, and the retry may decide otherwise (it folds the judgments that
-- arrived meanwhile). The retry's write is the one that stands, so the rows record which live
-- state wrote them and at which version, and which one withdrew them:
--   state, state_version                  the live state (its lake prefix: `live/<project>`,
--                                         `live/<project>/kinds/<kind>`) and the version its
--                                         write commits; null for a daily request and for a
--                                         row written before this migration
--   withdrawn_state, withdrawn_version    (task_requests) the live state and version whose
--                                         write withdrew the request; null when a daily write
--                                         withdrew it, or took over a live attempt's
--                                         withdrawal it would have made itself
--   withdrawn_from                        (task_requests) the status that write withdrew the
--                                         request from, `open` or `acknowledged`; null
--                                         alongside withdrawn_state
-- A retry withdraws the `open` requests and `active` blocks of its state written at a version
-- above the one it started from that it neither decides again nor lists, and re-opens the
-- requests withdrawn at such a version that another writer wrote or that it lists again
-- (unless a newer request of the task stands), in the status they were withdrawn from: a
-- request the tool had acknowledged stays taken. These columns are the pipelines'
-- bookkeeping: the tool reads `status` as before.
--
-- A block gets a third status, set by the pipelines with `withdrawn_at`:
--   withdrawn  the block came from a run that never committed, and its retry did not block
--              the annotator: the block is not in force; a tool that suspended the annotator
--              on it lifts the suspension (a retry that blocks again sets it back to active)
-- A revoked block stays revoked, and a withdrawn one cannot be revoked: nothing holds it.
-- Applied after 006, idempotently.

ALTER TABLE task_requests ADD COLUMN IF NOT EXISTS state text;
ALTER TABLE task_requests ADD COLUMN IF NOT EXISTS state_version bigint;
ALTER TABLE task_requests ADD COLUMN IF NOT EXISTS withdrawn_state text;
ALTER TABLE task_requests ADD COLUMN IF NOT EXISTS withdrawn_version bigint;
ALTER TABLE task_requests ADD COLUMN IF NOT EXISTS withdrawn_from text
    CONSTRAINT task_requests_withdrawn_from
    CHECK (withdrawn_from IS NULL OR withdrawn_from IN ('open', 'acknowledged'));
ALTER TABLE annotator_actions ADD COLUMN IF NOT EXISTS state text;
ALTER TABLE annotator_actions ADD COLUMN IF NOT EXISTS state_version bigint;
ALTER TABLE annotator_actions ADD COLUMN IF NOT EXISTS withdrawn_at timestamptz;

-- A live write looks these up by state and version above the one it started from: few rows,
-- none at all but after a failed attempt. The daily requests (null state) and the requests a
-- daily write withdrew stay out of the indexes, which hold only what a live write may look up.
CREATE INDEX IF NOT EXISTS task_requests_live_open ON task_requests (state, state_version)
    WHERE status = 'open' AND state IS NOT NULL;
CREATE INDEX IF NOT EXISTS task_requests_live_withdrawn
    ON task_requests (withdrawn_state, withdrawn_version)
    WHERE status = 'withdrawn' AND withdrawn_state IS NOT NULL;
-- A daily write looks up, per task it decides on, the requests a live write withdrew (to take
-- over those it would have withdrawn itself): without this index, and the statistics stale,
-- the planner reads every request of the project for each task.
CREATE INDEX IF NOT EXISTS task_requests_live_withdrawn_task ON task_requests (project, task_id)
    WHERE status = 'withdrawn' AND withdrawn_state IS NOT NULL;
CREATE INDEX IF NOT EXISTS annotator_actions_live_active
    ON annotator_actions (state, state_version) WHERE status = 'active' AND state IS NOT NULL;

ALTER TABLE annotator_actions DROP CONSTRAINT IF EXISTS annotator_actions_status_check;
ALTER TABLE annotator_actions DROP CONSTRAINT IF EXISTS annotator_actions_revocation;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'annotator_actions_life'
          AND conrelid = to_regclass('annotator_actions')
    ) THEN
        ALTER TABLE annotator_actions ADD CONSTRAINT annotator_actions_life CHECK (
            (status = 'active' AND revoked_at IS NULL AND revoked_by IS NULL
                AND withdrawn_at IS NULL)
            OR (status = 'revoked' AND revoked_at IS NOT NULL AND revoked_by IS NOT NULL
                AND withdrawn_at IS NULL)
            OR (status = 'withdrawn' AND withdrawn_at IS NOT NULL
                AND revoked_at IS NULL AND revoked_by IS NULL)
        );
    END IF;
END;
$$;

CREATE OR REPLACE FUNCTION annotator_actions_keep_revoked() RETURNS trigger AS $$
BEGIN
    IF OLD.status = 'revoked' AND NEW.status <> 'revoked' THEN
        RAISE EXCEPTION 'annotator_actions %: a revoked block stays revoked', OLD.decision_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.status = 'withdrawn' AND NEW.status = 'revoked' THEN
        RAISE EXCEPTION 'annotator_actions %: the pipelines withdrew this block (never in '
            'force): nothing to revoke', OLD.decision_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

INSERT INTO annotation_pipelines_migrations (version, name) VALUES (7, '007_live_attempts')
    ON CONFLICT (version) DO NOTHING;
