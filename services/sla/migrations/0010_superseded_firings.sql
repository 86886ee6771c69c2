-- A fired timer may be cancelled too (issue 10 item 1). The live timers are a cache of what a
-- complaint's facts give (``domain.derive``), one per clock, kind and point (timers_live_point);
-- what fired is history, and the firing log (0009) keeps it. When the facts move a clock's
-- deadline past a breach that already fired, the breach of the new deadline becomes the live
-- timer and the fired one is cancelled (its row, and its firing in the log, stay); a firing a
-- message made for a deadline the facts had already moved on is written as a timer fired and
-- cancelled at once, so that the log has it. The scanner claims only timers neither fired nor
-- cancelled, as before.
ALTER TABLE timers DROP CONSTRAINT timers_check;
