-- The annotation tool's database, as the ingest extracts from it.
-- Applied inside the schema chosen by `apply_schema` (search_path), so names are unqualified.
-- Every table has updated_at, maintained by a trigger, and an index on it: incremental
-- extraction reads `updated_at > watermark` and must not scan the table.
-- This file is migration 1; each numbered file beside it is the next one. They are applied
-- in order (`apply_schema`, or `psql -f` on each), each is idempotent and records its version
-- in `annotation_pipelines_migrations` once, so applying them all again changes nothing:
-- `SELECT version FROM annotation_pipelines_migrations` says which the database has.

CREATE TABLE IF NOT EXISTS annotation_pipelines_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- Releases up to migration 10 recorded our versions in `schema_migrations`, the table Ecto,
-- dbmate, golang-migrate and Rails keep their own versions in. While this table is still
-- empty, a `schema_migrations` of ours is read once: it is taken for ours only with our columns
-- (version integer, name text, applied_at timestamptz) and our first row (1, 'schema'), and
-- only rows naming one of our migrations are copied, so a framework's versions never stand for
-- ours and its table is never written. Ours is left in place: a session of an earlier release
-- still reads its versions there, and would apply every migration again without it.
DO $adopt$
DECLARE
    legacy regclass := to_regclass('schema_migrations');
    ours boolean;
    granted record;
BEGIN
    IF legacy IS NULL OR EXISTS (SELECT 1 FROM annotation_pipelines_migrations)
       OR NOT has_table_privilege(legacy, 'SELECT') THEN
        RETURN;
    END IF;
    IF (SELECT count(*) FROM pg_attribute
         WHERE attrelid = legacy AND attnum > 0 AND NOT attisdropped
           AND (attname, atttypid) IN (('version', 'integer'::regtype), ('name', 'text'::regtype),
                                       ('applied_at', 'timestamptz'::regtype))) < 3 THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE version = 1 AND name = %L)', legacy,
                   'schema') INTO ours;
    IF NOT ours THEN
        RETURN;
    END IF;
    EXECUTE format(
        $copy$
        INSERT INTO annotation_pipelines_migrations (version, name, applied_at)
        SELECT version, name, applied_at FROM %s
         WHERE (version, name) IN (
                   (1, 'schema'), (2, '002_loop_requests'), (3, '003_request_status'),
                   (4, '004_block_revoked'), (5, '005_kind_block_revoked'),
                   (6, '006_deletions'), (7, '007_live_attempts'),
                   (8, '008_gold_tombstone_label'), (9, '009_kind_answers'),
                   (10, '010_project_scale'))
        ON CONFLICT (version) DO NOTHING
        $copy$,
        legacy
    );
    -- Whoever could read or record versions there (the live runs' role, when a DBA runs this)
    -- still can.
    FOR granted IN
        SELECT c.relowner AS grantee, 'ALL' AS privilege FROM pg_class c WHERE c.oid = legacy
        UNION
        SELECT a.grantee, a.privilege_type
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = legacy
    LOOP
        CONTINUE WHEN granted.grantee = (SELECT oid FROM pg_roles WHERE rolname = current_user);
        EXECUTE format(
            'GRANT %s ON annotation_pipelines_migrations TO %s',
            granted.privilege,
            CASE granted.grantee
                WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(granted.grantee))
            END
        );
    END LOOP;
END;
$adopt$;

CREATE TABLE IF NOT EXISTS projects (
    project     text PRIMARY KEY,
    label_set   text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS annotators (
    annotator_id text PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS tasks (
    task_id     text PRIMARY KEY,
    project     text NOT NULL REFERENCES projects (project),
    payload     text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS assignments (
    assignment_id bigserial PRIMARY KEY,
    task_id       text NOT NULL REFERENCES tasks (task_id),
    annotator_id  text NOT NULL REFERENCES annotators (annotator_id),
    assigned_at   timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (task_id, annotator_id)
);

-- No unique (task_id, annotator_id) here on purpose: the tool lets an annotator resubmit, and
-- the ingest resolves duplicates by its documented rule (latest submission wins, rest counted).
CREATE TABLE IF NOT EXISTS judgments (
    judgment_id   text PRIMARY KEY,
    task_id       text NOT NULL,
    project       text NOT NULL,
    annotator_id  text,
    label         text,
    submitted_at  timestamptz NOT NULL,
    duration_s    double precision,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS gold_labels (
    task_id     text PRIMARY KEY,
    project     text NOT NULL,
    label       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS projects_updated_at ON projects (updated_at);
CREATE INDEX IF NOT EXISTS annotators_updated_at ON annotators (updated_at);
CREATE INDEX IF NOT EXISTS tasks_updated_at ON tasks (updated_at);
CREATE INDEX IF NOT EXISTS tasks_project ON tasks (project);
CREATE INDEX IF NOT EXISTS assignments_updated_at ON assignments (updated_at);
CREATE INDEX IF NOT EXISTS judgments_updated_at ON judgments (updated_at);
CREATE INDEX IF NOT EXISTS judgments_task ON judgments (task_id);
-- The extract re-reads judgments submitted after the watermark (possible clock skew).
CREATE INDEX IF NOT EXISTS judgments_submitted_at ON judgments (submitted_at);
CREATE INDEX IF NOT EXISTS gold_labels_updated_at ON gold_labels (updated_at);

CREATE OR REPLACE FUNCTION touch_updated_at() RETURNS trigger AS $$
BEGIN
    -- An update that sets updated_at itself (a backfill, a replayed change) keeps its value.
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DO $$
DECLARE name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['projects', 'annotators', 'tasks', 'assignments', 'judgments', 'gold_labels'] LOOP
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

INSERT INTO annotation_pipelines_migrations (version, name) VALUES (1, 'schema') ON CONFLICT (version) DO NOTHING;
