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
    label        text NOT NULL,
    updated_at   timestamptz NOT NULL,
    deleted_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS judgment_deletions_deleted_at ON judgment_deletions (deleted_at);
CREATE INDEX IF NOT EXISTS gold_label_deletions_deleted_at ON gold_label_deletions (deleted_at);

-- One statement-level trigger per table: a bulk delete writes its tombstones in one INSERT.
-- The tombstone table is the deleted table's own schema's (the trigger runs under the
-- deleting session's search_path).
CREATE OR REPLACE FUNCTION record_deletions() RETURNS trigger AS $$
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
$$ LANGUAGE plpgsql;

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
                'FOR EACH STATEMENT EXECUTE FUNCTION record_deletions()',
                name || '_deleted', name
            );
        END IF;
    END LOOP;
END;
$$;

INSERT INTO schema_migrations (version, name) VALUES (6, '006_deletions')
    ON CONFLICT (version) DO NOTHING;
