-- What a plugin wrote during an invocation, kept bounded with its record so its tenant can
-- see why it failed: the log lines (JSON array of {at_us, level, message}) and the end of
-- its stderr (where a Python or JavaScript runtime prints an uncaught exception).
ALTER TABLE invocations ADD COLUMN logs TEXT NOT NULL DEFAULT '[]';
ALTER TABLE invocations ADD COLUMN stderr TEXT NOT NULL DEFAULT '';
