-- Migration 8: a gold label of a kind whose value is not a label (migration 9) has no `label`,
-- and neither has its tombstone, so `gold_label_deletions.label` may be null; without this a
-- deletion of such a gold label would fail in the tool. The tombstone tables belong to the role
-- that applied migration 6 (the tool's owner, or the pipelines' role granted TRIGGER), so this
-- step stands apart from migration 9, which needs the owner of the tool's own tables: each is
-- applied by its own owner. Without migration 6 there is nothing to change (its file creates
-- the column nullable). One statement, so a failure records nothing, under psql too.

DO $$
DECLARE
    required boolean;
    owned boolean;
BEGIN
    SELECT a.attnotnull, pg_has_role(c.relowner, 'USAGE')
      INTO required, owned
      FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'label'
     WHERE c.oid = to_regclass('gold_label_deletions');
    IF required THEN
        IF NOT owned THEN
            RAISE EXCEPTION 'must be owner of table gold_label_deletions'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        ALTER TABLE gold_label_deletions ALTER COLUMN label DROP NOT NULL;
    END IF;
    INSERT INTO annotation_pipelines_migrations (version, name) VALUES (8, '008_gold_tombstone_label')
        ON CONFLICT (version) DO NOTHING;
END;
$$;
