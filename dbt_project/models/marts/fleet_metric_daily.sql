-- One row per tenant, metric, unit and UTC day: the fleet's readings of that metric.
--
-- Merged from rollup_1d the way the rollups merge (contract 6): counts, sums, minima and
-- maxima combine directly, and the spread is each device-day's m2 plus its count times the
-- squared distance of its mean from the fleet's (Chan et al.), so `mean` and `stddev` are
-- those of the readings themselves, not an average of device averages. `stddev` is the
-- sample standard deviation, as in the rollups and baselines (null below two readings).
with device_days as (
    select
        tenant_id,
        metric,
        unit,
        bucket_date as day,
        device_id,
        "count" as readings,
        "sum" as total,
        m2,
        "min" as lowest,
        "max" as highest,
        sum("sum") over fleet / sum("count") over fleet as fleet_mean
    from {{ source('lake', 'rollup_1d') }}
    window fleet as (partition by tenant_id, metric, unit, bucket_date)
)

select
    tenant_id,
    metric,
    unit,
    day,
    count(distinct device_id) as devices,
    cast(sum(readings) as bigint) as readings,
    sum(total) / sum(readings) as mean,
    case
        when sum(readings) > 1
            then sqrt(
                sum(m2 + readings * power(total / readings - fleet_mean, 2))
                / (sum(readings) - 1)
            )
    end as stddev,
    min(lowest) as min,
    max(highest) as max
from device_days
group by tenant_id, metric, unit, day
