-- pushgw schema, version 3: storage settings for the lookups of every push.
--
-- The iOS badge increment updates installations on every push. With full
-- pages an update cannot stay on its page (no HOT update), so each one
-- also inserts into every index, the GIN index on channels included, whose
-- pending list (fastupdate) then grows to gin_pending_list_limit and is
-- scanned by every lookup: 0.8 ms per recipient instead of 1 us in the
-- benchmark (docs/BENCHMARKS.md). Room on each page keeps badge updates
-- HOT; installations change rarely, so the GIN index is written directly.
ALTER TABLE installations SET (fillfactor = 80);
ALTER INDEX installations_channels_gin SET (fastupdate = off);
SELECT gin_clean_pending_list('installations_channels_gin');
