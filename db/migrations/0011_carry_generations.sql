-- A carry's generation (issue 16): drivers keep the carries they computed in memory and write them to
-- metrics_carry only every few minutes, so a live minute of 5,000 symbols does not read and write 32 MB of state.
-- A cached carry is used only while its symbol's row has the generation the cache was built on. Every change that
-- is not a pure append of newer bars (a late, repaired or corrected bar) writes the row with a fresh generation
-- from this sequence, so every other driver's cached carry of that symbol stops being used; a generation is never
-- reused, even after a recompute deleted the row.
CREATE SEQUENCE metrics_carry_generation;
ALTER TABLE metrics_carry ADD COLUMN generation bigint NOT NULL DEFAULT nextval('metrics_carry_generation');
