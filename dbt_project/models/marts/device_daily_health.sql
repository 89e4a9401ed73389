-- One row per device and UTC event day: what its event stream says about its health.
--
-- Boots, crashes, heartbeats and offline reports (the MQTT Last Will included) per day,
-- the firmware it reported last that day (null when it sent no firmware event), and its
-- type and fleet from the registry (the "reported" shadow). Crash and reboot rates per
-- firmware version, which OTA rollouts are judged by, are a group-by away.
with days as (
    select
        tenant_id,
        device_id,
        event_date as day,
        count(*) filter (where event_type = 'boot') as boots,
        count(*) filter (where event_type = 'crash') as crashes,
        count(*) filter (where event_type = 'heartbeat') as heartbeats,
        count(*) filter (where event_type = 'status' and status = 'offline') as offline_reports,
        arg_max(firmware, event_time) filter (where firmware is not null) as firmware_reported,
        min(event_time) as first_event_time,
        max(event_time) as last_event_time
    from {{ source('lake', 'device_events') }}
    group by tenant_id, device_id, event_date
)

select
    days.*,
    registry.device_type,
    registry.fleet
from days
left join {{ source('lake', 'device_registry') }} as registry
    using (tenant_id, device_id)
