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
