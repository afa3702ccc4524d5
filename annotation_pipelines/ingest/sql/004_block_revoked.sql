-- Migration 4: the tool reverses a block. A project lead who finds a block wrong (a bad gold
-- set, say) sets the block row's `status` to `revoked` with `revoked_at` and `revoked_by`:
--   active   written by the pipelines (the default, and every block written before this)
--   revoked  set by the tool: the block is lifted; the next live run un-flags the annotator's
--            judgments and counts only their judgments after it toward a new block
-- A revocation is final: a new block is a new row (a new decision_id), written by the
-- pipelines. The `updated_at` trigger of migration 3 moves with the change, so the live runs
-- read reversals on `annotator_actions_updated_at`. Applied after 003, idempotently; run again
-- over a database that has migration 7, it leaves the statuses and the trigger function as 7
-- set them (7 replaces the revocation check with `annotator_actions_life`).

ALTER TABLE annotator_actions ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'active'
    CHECK (status IN ('active', 'revoked'));
ALTER TABLE annotator_actions ADD COLUMN IF NOT EXISTS revoked_at timestamptz;
ALTER TABLE annotator_actions ADD COLUMN IF NOT EXISTS revoked_by text;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname IN ('annotator_actions_revocation', 'annotator_actions_life')
          AND conrelid = to_regclass('annotator_actions')
    ) AND NOT EXISTS (SELECT 1 FROM annotation_pipelines_migrations WHERE version >= 7) THEN
        ALTER TABLE annotator_actions ADD CONSTRAINT annotator_actions_revocation CHECK (
            (status = 'active' AND revoked_at IS NULL AND revoked_by IS NULL)
            OR (status = 'revoked' AND revoked_at IS NOT NULL AND revoked_by IS NOT NULL)
        );
    END IF;
END;
$$;

-- Only a categorical block can be revoked for now: the kind states (whose blocks name their
-- kind in `evidence`) cannot lift one, and a revocation nothing acts on would mislead.
-- (Migration 5 drops this check; not added again over a database that has 5.)
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'annotator_actions_revocable'
          AND conrelid = to_regclass('annotator_actions')
    ) AND NOT EXISTS (SELECT 1 FROM annotation_pipelines_migrations WHERE version >= 5) THEN
        ALTER TABLE annotator_actions ADD CONSTRAINT annotator_actions_revocable CHECK (
            status = 'active' OR evidence IS NULL OR NOT (evidence ? 'kind')
        );
    END IF;
END;
$$;

-- Once revoked, a block stays revoked: un-revoking would not re-block (the live state has
-- lifted it), so the row would say what no layer does.
DO $do$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM annotation_pipelines_migrations WHERE version >= 7) THEN
        CREATE OR REPLACE FUNCTION annotator_actions_keep_revoked() RETURNS trigger AS $fn$
        BEGIN
            IF OLD.status = 'revoked' AND NEW.status <> 'revoked' THEN
                RAISE EXCEPTION 'annotator_actions %: a revoked block stays revoked',
                    OLD.decision_id USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END;
        $fn$ LANGUAGE plpgsql;
    END IF;
END;
$do$;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_trigger
        WHERE tgname = 'annotator_actions_keep_revoked'
          AND tgrelid = to_regclass('annotator_actions')
    ) THEN
        CREATE TRIGGER annotator_actions_keep_revoked BEFORE UPDATE ON annotator_actions
            FOR EACH ROW EXECUTE FUNCTION annotator_actions_keep_revoked();
    END IF;
END;
$$;

INSERT INTO annotation_pipelines_migrations (version, name) VALUES (4, '004_block_revoked')
    ON CONFLICT (version) DO NOTHING;
