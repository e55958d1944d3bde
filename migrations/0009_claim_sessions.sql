-- A claim names the database session of the process that made it: when that process dies,
-- its connections close and its claims stop counting at once (a re-run after a killed upload
-- waited two minutes for claims nobody would finish).
ALTER TABLE design_claims ADD COLUMN backend_pid integer;
