-- Migration 2: what the pipelines ask of the annotation tool: another judgment or an expert for a task, a
-- block for an annotator. Written once per decision: `decision_id` is a hash of the decision
-- (kind, subject, the live state version that caused it), so a retried write inserts nothing
-- (`INSERT ... ON CONFLICT (decision_id) DO NOTHING`). Applied after schema.sql, idempotently.

CREATE TABLE IF NOT EXISTS task_requests (
    request_id   bigserial PRIMARY KEY,
    task_id      text NOT NULL,
    project      text NOT NULL,
    request      text NOT NULL CHECK (request IN ('another_judgment', 'expert_review')),
    reason       text NOT NULL,
    confidence   double precision,
    posterior    jsonb,
    decision_id  text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS annotator_actions (
    action_id     bigserial PRIMARY KEY,
    annotator_id  text NOT NULL,
    project       text NOT NULL,
    action        text NOT NULL CHECK (action IN ('block')),
    reason        text NOT NULL,
    evidence      jsonb,
    decision_id   text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS task_requests_project_created ON task_requests (project, created_at);
CREATE INDEX IF NOT EXISTS task_requests_task ON task_requests (task_id);
CREATE INDEX IF NOT EXISTS annotator_actions_annotator ON annotator_actions (annotator_id);

INSERT INTO annotation_pipelines_migrations (version, name) VALUES (2, '002_loop_requests')
    ON CONFLICT (version) DO NOTHING;
