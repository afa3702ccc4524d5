-- Migration 5: a kind's block can be revoked too. The kind states (whose blocks name their kind
-- in `evidence`) lift a revoked block as the categorical state does, so the CHECK of
-- migration 4 that refused revoking them goes. Applied after 004, idempotently.

ALTER TABLE annotator_actions DROP CONSTRAINT IF EXISTS annotator_actions_revocable;

INSERT INTO annotation_pipelines_migrations (version, name) VALUES (5, '005_kind_block_revoked')
    ON CONFLICT (version) DO NOTHING;
