-- At most one active model, enforced by the database: two activations racing on
-- different connections cannot both win.
CREATE UNIQUE INDEX models_one_active ON models (state) WHERE state = 'active';

-- How each recorded actor was authenticated (cli-flag, cli-env, os-user, demo, jwt, …);
-- rows written before principals existed say `unrecorded`.
ALTER TABLE models ADD COLUMN created_auth TEXT NOT NULL DEFAULT 'unrecorded';
ALTER TABLE model_history ADD COLUMN by_auth TEXT NOT NULL DEFAULT 'unrecorded';
ALTER TABLE scoring_runs ADD COLUMN by_auth TEXT NOT NULL DEFAULT 'unrecorded';
