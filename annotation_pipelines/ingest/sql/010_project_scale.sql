-- Migration 10: a project's rating scale, beside its label set, for the projects the annotation
-- DB feeds (`annotation_pipelines.scale`; an export's project declares it in project.json):
--   scale   null (no scale), or {"min": 1, "max": 5, "step": 1, "integer": false}: `min` and
--           `max` finite numbers with min < max, `step` (optional) a number > 0, `integer`
--           (optional) true or false, nothing else
-- The extract quarantines a numeric judgment or gold label outside it as `outside_scale`. Unlike
-- an answer, a scale is written by whoever sets the project up, not by an annotator's INSERT, so
-- a CHECK refuses one that is not a scale when it is declared (a scale nobody meant would
-- quarantine good answers), rather than the extract failing on it later. The CASE keeps each
-- cast behind its type test (AND does not promise an order). Adding a nullable column with a
-- CHECK that only reads the row scans `projects` (a row per project) under an ACCESS EXCLUSIVE
-- lock held for milliseconds. Needs a role owning `projects`; the pipelines run without it (no
-- DB scale) and say so. A `scale` column the tool already has is its own: refused, never
-- reinterpreted. One statement, so a failure records nothing, under psql too; applied again,
-- it changes nothing.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM annotation_pipelines_migrations WHERE version = 10) THEN
        RETURN;
    END IF;
    IF EXISTS (
        SELECT 1 FROM pg_attribute
         WHERE attrelid = to_regclass('projects') AND attname = 'scale' AND attnum > 0
           AND NOT attisdropped
    ) THEN
        -- Applied before and its record lost (or the files run again by hand): the column and
        -- its check as this migration adds them; anything else is the tool's own.
        IF NOT EXISTS (
            SELECT 1 FROM pg_attribute a JOIN pg_constraint k
                ON k.conrelid = a.attrelid AND k.conname = 'projects_scale_is_a_scale'
             WHERE a.attrelid = to_regclass('projects') AND a.attname = 'scale'
               AND a.atttypid = 'jsonb'::regtype
        ) THEN
            RAISE EXCEPTION 'projects.scale exists already (a column of the tool''s own): rename it first'
                USING ERRCODE = 'duplicate_column';
        END IF;
    ELSE
        ALTER TABLE projects ADD COLUMN scale jsonb
            CONSTRAINT projects_scale_is_a_scale CHECK (
                scale IS NULL OR CASE
                    WHEN jsonb_typeof(scale) <> 'object' THEN false
                    WHEN scale - ARRAY['min', 'max', 'step', 'integer'] <> '{}'::jsonb THEN false
                    WHEN coalesce(jsonb_typeof(scale -> 'min'), '') <> 'number'
                      OR coalesce(jsonb_typeof(scale -> 'max'), '') <> 'number' THEN false
                    WHEN scale ? 'step' AND jsonb_typeof(scale -> 'step') <> 'number' THEN false
                    WHEN scale ? 'integer' AND jsonb_typeof(scale -> 'integer') <> 'boolean'
                        THEN false
                    -- A float's range: a bound beyond it is no number the answers can be.
                    WHEN abs((scale ->> 'min')::numeric) > 1.7976931348623157e308
                      OR abs((scale ->> 'max')::numeric) > 1.7976931348623157e308
                      OR abs(coalesce((scale ->> 'step')::numeric, 1)) > 1.7976931348623157e308
                        THEN false
                    -- Below a float's smallest normal number and not zero: the extract would
                    -- read another value (1e-400 reads as 0), and float8 refuses the cast.
                    WHEN (scale ->> 'min')::numeric <> 0
                         AND abs((scale ->> 'min')::numeric) < 2.2250738585072014e-308
                      OR (scale ->> 'max')::numeric <> 0
                         AND abs((scale ->> 'max')::numeric) < 2.2250738585072014e-308
                      OR coalesce((scale ->> 'step')::numeric, 1) <> 0
                         AND abs(coalesce((scale ->> 'step')::numeric, 1)) < 2.2250738585072014e-308
                        THEN false
                    -- Compared as the floats the extract reads: bounds only a numeric tells
                    -- apart (1 and 1.00000000000000000001) are one float, no scale.
                    ELSE (scale ->> 'min')::numeric::float8 < (scale ->> 'max')::numeric::float8
                     AND coalesce((scale ->> 'step')::numeric::float8 > 0, true)
                END
            );
    END IF;
    INSERT INTO annotation_pipelines_migrations (version, name) VALUES (10, '010_project_scale')
        ON CONFLICT (version) DO NOTHING;
END;
$$;
