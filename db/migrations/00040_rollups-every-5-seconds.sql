-- The worker folds new events every 5 seconds by default, instead of every 10.
--
-- Measured side by side (bench/README.md, "Freshness"): at about 13,000 generated events/s
-- sent, the largest pending age was 17.7–18.2 s with the 10-second interval and 10.0–10.3 s
-- with 5 seconds, inside the 15-second freshness target. A run over an empty window is one
-- short transaction, so the shorter period costs an idle deployment next to nothing.
--
-- A deployment that set an interval other than 10 seconds keeps it; one still at 10 seconds
-- (however it is spelled: the default and a value set to it look the same) gets 5.

UPDATE tally.settings
SET value = CASE WHEN value::interval = default_value::interval THEN '5 seconds' ELSE value END,
    updated_at = CASE WHEN value::interval = default_value::interval THEN now() ELSE updated_at END,
    default_value = '5 seconds'
WHERE name = 'rollups.interval';

UPDATE tally.settings SET description =
  'How often the worker runs tally.run_rollups (default 5 seconds); running workers re-read it every tick (`tally schedule set tally-rollups 2s`). Reads are exact at any moment anyway; this bounds how much tail they must add and how stale the aggregate tables read alone can be.'
WHERE name = 'rollups.interval';
