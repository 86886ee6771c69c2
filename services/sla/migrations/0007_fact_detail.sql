-- What a fact needs besides its kind and time to be applied whenever it is processed (issue 10
-- item 1): for ``reclassified``, the correction (policy key, category, reason, who) as JSON, so
-- a reclassification processed before the submission is applied when the submission arrives.
ALTER TABLE facts ADD COLUMN detail text;
