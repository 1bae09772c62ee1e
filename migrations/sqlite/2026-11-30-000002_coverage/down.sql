DROP TABLE flood_stage_settings;
DROP INDEX patrol_coverage_segment_last;
DROP TABLE patrol_coverage;
