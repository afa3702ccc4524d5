-- Migration 6: the tool hard-deletes judgments and gold labels (an annotator removed, a task
-- reset, an erasure request), and a deleted row has no `updated_at` for the extract to read.
-- An AFTER DELETE trigger keeps a tombstone per deleted row: its key, the columns that place
-- it in a daily partition (`submitted_at`, and the deleted version's `updated_at`) and
-- `deleted_at`, stamped `now()` like `updated_at`: the start of the deleting transaction, so
-- the extract's safe upper bound (before the oldest open transaction) holds for tombstones
-- too. The extract reads `deleted_at` in the same window as `updated_at`; a row re-inserted
-- after its deletion carries a later (or, in the same transaction, the same) stamp and wins.
-- TRUNCATE fires no delete trigger and leaves no tombstone. Applied after 005, idempotently.

CREATE TABLE IF NOT EXISTS judgment_deletions (
    deletion_id   bigserial PRIMARY KEY,
    judgment_id   text NOT NULL,
    task_id       text NOT NULL,
    project       text NOT NULL,
    annotator_id  text,
    submitted_at  timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS gold_label_deletions (
    deletion_id  bigserial PRIMARY KEY,
    task_id      text NOT NULL,
    project      text NOT NULL,
    -- null for a gold label of a kind whose value is not a label (migration 8)
    label        text,
    updated_at   timestamptz NOT NULL,
    deleted_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS judgment_deletions_deleted_at ON judgment_deletions (deleted_at);
CREATE INDEX IF NOT EXISTS gold_label_deletions_deleted_at ON gold_label_deletions (deleted_at);

-- One statement-level trigger per table: a bulk delete writes its tombstones in one INSERT.
-- The tombstone table is the deleted table's own schema's. SECURITY DEFINER: the trigger runs
-- as whoever deletes (the tool's role), which need not be allowed to write the tombstone
-- tables; the function writes them as the role that applied this migration, which created
-- them. Its search_path is fixed (only pg_catalog, every name it writes qualified) so a
-- deleting session's search_path cannot put its own objects in the definer's hands, and its
-- name carries the project's prefix so it cannot replace a function of the tool's.
-- This migration needs a role that owns `judgments` and `gold_labels` (CREATE TRIGGER); a
-- live run whose role does not skips it and says so (`annotation-pipelines migrate`).
CREATE OR REPLACE FUNCTION annotation_pipelines_record_deletions() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'judgments' THEN
        EXECUTE format(
            'INSERT INTO %I.judgment_deletions '
            '(judgment_id, task_id, project, annotator_id, submitted_at, updated_at, deleted_at) '
            'SELECT judgment_id, task_id, project, annotator_id, submitted_at, updated_at, now() '
            'FROM gone',
            TG_TABLE_SCHEMA
        );
    ELSE
        EXECUTE format(
            'INSERT INTO %I.gold_label_deletions '
            '(task_id, project, label, updated_at, deleted_at) '
            'SELECT task_id, project, label, updated_at, now() FROM gone',
            TG_TABLE_SCHEMA
        );
    END IF;
    RETURN NULL;
END;
$$;

-- Only its triggers call it (a trigger's firing checks no EXECUTE privilege).
REVOKE ALL ON FUNCTION annotation_pipelines_record_deletions() FROM PUBLIC;

DO $$
DECLARE name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['judgments', 'gold_labels'] LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_trigger
            WHERE tgname = name || '_deleted' AND tgrelid = to_regclass(name)
        ) THEN
            EXECUTE format(
                'CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS gone '
                'FOR EACH STATEMENT EXECUTE FUNCTION annotation_pipelines_record_deletions()',
                name || '_deleted', name
            );
        END IF;
    END LOOP;
END;
$$;

INSERT INTO annotation_pipelines_migrations (version, name) VALUES (6, '006_deletions')
    ON CONFLICT (version) DO NOTHING;
