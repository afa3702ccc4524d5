-- Migration 8: judgments and gold labels of every kind, not only a categorical `label`.
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
-- A kind gold label has no `label`, so it (and its tombstone) may be null.
-- Adding a nullable column without a default only changes the catalog: the ACCESS EXCLUSIVE
-- locks are held for milliseconds. Needs a role owning the tables; the pipelines run without
-- it (categorical rows only) and say so. Applied after 007, idempotently.

ALTER TABLE judgments ADD COLUMN IF NOT EXISTS kind text, ADD COLUMN IF NOT EXISTS answer jsonb;
ALTER TABLE gold_labels ADD COLUMN IF NOT EXISTS kind text, ADD COLUMN IF NOT EXISTS answer jsonb;
ALTER TABLE gold_labels ALTER COLUMN label DROP NOT NULL;
ALTER TABLE IF EXISTS gold_label_deletions ALTER COLUMN label DROP NOT NULL;

INSERT INTO schema_migrations (version, name) VALUES (8, '008_kind_answers') ON CONFLICT (version) DO NOTHING;
