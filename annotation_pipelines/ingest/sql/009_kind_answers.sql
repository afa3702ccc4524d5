-- Migration 9: judgments and gold labels of every kind, not only a categorical `label`.
--   kind    one of the kinds of `annotation_pipelines.kinds` (multilabel, numeric, ranking,
--           pairwise, spans, boxes, text); null, or 'categorical', for a row whose value is
--           `label`
--   answer  the value of any other kind, as JSON: the value itself (a list of labels, a
--           number, a ranking best first, a list of spans `{start, end, label}` with
--           character offsets, end exclusive, a list of boxes `{label, x_min, y_min, x_max,
--           y_max}`, a string), or an object keyed by the kind's canonical columns:
--           `{left, right, winner}` for pairwise (the only form it has), `{boxes,
--           coordinates, image_width, image_height}` for boxes measured in percent
-- No CHECK on either: the extract validates each row like an export's and quarantines a bad
-- one naming its table, key and field, where a constraint would fail the tool's INSERT.
-- A kind gold label has no `label`, so it may be null (its tombstone too: migration 8 first).
-- Adding a nullable column without a default only changes the catalog: the ACCESS EXCLUSIVE
-- locks are held for milliseconds. Needs a role owning the tables; the pipelines run without
-- it (categorical rows only) and say so. A `kind` or `answer` column the tool already has is
-- its own, not this one: refused, never reinterpreted. One statement, so a failure records
-- nothing, under psql too; applied again, it changes nothing.

DO $$
DECLARE
    found record;
    ours integer;
    present integer;
BEGIN
    IF EXISTS (SELECT 1 FROM annotation_pipelines_migrations WHERE version = 9) THEN
        RETURN;
    END IF;
    IF EXISTS (
        SELECT 1 FROM pg_attribute
         WHERE attrelid = to_regclass('gold_label_deletions') AND attname = 'label'
           AND attnotnull
    ) THEN
        RAISE EXCEPTION 'gold_label_deletions.label is NOT NULL: apply migration 8 first'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- All four as this migration adds them: applied before and its record lost (or the
    -- files run again by hand); anything less is a column of the tool's own.
    SELECT count(*) FILTER (
               WHERE (a.attname = 'kind' AND a.atttypid = 'text'::regtype)
                  OR (a.attname = 'answer' AND a.atttypid = 'jsonb'::regtype)
           ),
           count(*)
      INTO ours, present
      FROM pg_attribute a
     WHERE a.attrelid IN (to_regclass('judgments'), to_regclass('gold_labels'))
       AND a.attname IN ('kind', 'answer') AND a.attnum > 0 AND NOT a.attisdropped;
    IF present > 0 AND NOT (ours = 4 AND present = 4) THEN
        FOR found IN
            SELECT c.relname, a.attname
              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             WHERE a.attrelid IN (to_regclass('judgments'), to_regclass('gold_labels'))
               AND a.attname IN ('kind', 'answer') AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY c.relname DESC, a.attname DESC
             LIMIT 1
        LOOP
            RAISE EXCEPTION '%.% exists already (a column of the tool''s own): rename it first',
                found.relname, found.attname USING ERRCODE = 'duplicate_column';
        END LOOP;
    END IF;
    IF present = 0 THEN
        ALTER TABLE judgments ADD COLUMN kind text, ADD COLUMN answer jsonb;
        ALTER TABLE gold_labels ADD COLUMN kind text, ADD COLUMN answer jsonb;
    END IF;
    ALTER TABLE gold_labels ALTER COLUMN label DROP NOT NULL;
    INSERT INTO annotation_pipelines_migrations (version, name) VALUES (9, '009_kind_answers')
        ON CONFLICT (version) DO NOTHING;
END;
$$;
