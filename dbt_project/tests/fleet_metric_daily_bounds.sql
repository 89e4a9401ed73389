-- Fails with the rows whose figures contradict each other: a mean outside the row's own
-- minimum and maximum (beyond float rounding), fewer readings than devices (every device
-- of a row has a reading), or a negative spread.
select *
from {{ ref('fleet_metric_daily') }}
where mean < min - 1e-9 * greatest(abs(min), abs(max), 1)
    or mean > max + 1e-9 * greatest(abs(min), abs(max), 1)
    or devices < 1
    or readings < devices
    or stddev < 0
