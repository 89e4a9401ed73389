-- Fails with the keys that have more than one row.
select tenant_id, metric, unit, day, count(*) as rows_per_key
from {{ ref('fleet_metric_daily') }}
group by tenant_id, metric, unit, day
having count(*) > 1
