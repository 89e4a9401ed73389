-- Fails with the device days that have more than one row.
select tenant_id, device_id, day, count(*) as rows_per_key
from {{ ref('device_daily_health') }}
group by tenant_id, device_id, day
having count(*) > 1
