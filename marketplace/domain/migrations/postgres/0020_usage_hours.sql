-- Usage summed per install, meter and UTC hour (`records/usage_hours.rs`): written with the
-- usage rows it sums, in their transaction, so a billing run reads a segment's whole hours
-- here and only the invocations of its partial hours at the edges. `hour_start` is the hour's
-- first millisecond.
CREATE TABLE usage_hours (
    install_id TEXT NOT NULL,
    meter TEXT NOT NULL,
    hour_start BIGINT NOT NULL,
    units BIGINT NOT NULL,
    PRIMARY KEY (install_id, meter, hour_start)
);

-- What billing counts today: the usage rows of applied invocations, by their start.
INSERT INTO usage_hours (install_id, meter, hour_start, units)
SELECT install_id, meter, hour_start, CAST(SUM(units) AS BIGINT) AS units
FROM (SELECT i.install_id, u.meter, i.started_at - ((i.started_at % 3600000) + 3600000) % 3600000 AS hour_start, u.units
    FROM invocations i JOIN invocation_usage u ON u.invocation_id = i.id WHERE i.outcome = 'ok') AS x
GROUP BY install_id, meter, hour_start
ORDER BY install_id, meter, hour_start;
