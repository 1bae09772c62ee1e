DROP TABLE drills;
DROP TABLE response_levels;
DROP TABLE station_stages;
DROP TABLE station_readings;
DROP TABLE stations;
