-- Deliverability per US-Eastern send day (Postmark's calendar), server, message stream and
-- tag: sent (one per recipient, as Postmark counts), the bounces (hard, soft; spam complaints
-- apart), opens and clicks of that day's mail, and their rates over sent. An event counts on
-- the day its message was sent, so a rate is the share of that day's mail, and late opens
-- raise it; an event whose message is not loaded (sent before the synced range) counts on its
-- own day. An empty tag counts as untagged (null).
with messages as (
    select server_id, message_id, coalesce(message_stream, '') as stream_key, coalesce(tag, '') as tag_key,
           {{ var('postmark_schema', 'main') }}.eastern_date(received_at) as day, len(recipients) as sent
    from {{ source('postmark', 'messages_outbound') }}
),
-- One row per message and recipient that opened (or clicked), with the count of its events.
engaged as (
    select 'open' as kind, server_id, message_id, any_value(message_stream) as message_stream,
           any_value(tag) as tag, min(received_at) as first_at, count(*) as events
    from {{ source('postmark', 'messages_opens') }}
    group by server_id, message_id, recipient
    union all
    select 'click' as kind, server_id, message_id, any_value(message_stream) as message_stream,
           any_value(tag) as tag, min(received_at) as first_at, count(*) as events
    from {{ source('postmark', 'messages_clicks') }}
    group by server_id, message_id, recipient
),
events as (
    select server_id, stream_key, tag_key, day, 1 as messages, sent
    from messages
    union all by name
    select b.server_id,
           coalesce(m.stream_key, b.message_stream, '') as stream_key,
           coalesce(m.tag_key, b.tag, '') as tag_key,
           coalesce(m.day, {{ var('postmark_schema', 'main') }}.eastern_date(b.bounced_at)) as day,
           (b.type <> 'SpamComplaint')::BIGINT as bounced,
           (b.type = 'HardBounce')::BIGINT as hard_bounces,
           (b.type in ('SoftBounce', 'Transient'))::BIGINT as soft_bounces,
           (b.type = 'SpamComplaint')::BIGINT as spam_complaints
    from {{ source('postmark', 'bounces') }} as b
    left join messages as m on m.server_id = b.server_id and m.message_id = b.message_id
    union all by name
    select e.server_id,
           coalesce(m.stream_key, e.message_stream, '') as stream_key,
           coalesce(m.tag_key, e.tag, '') as tag_key,
           coalesce(m.day, {{ var('postmark_schema', 'main') }}.eastern_date(e.first_at)) as day,
           case when e.kind = 'open' then e.events end as opens,
           (e.kind = 'open')::BIGINT as unique_opens,
           case when e.kind = 'click' then e.events end as clicks,
           (e.kind = 'click')::BIGINT as unique_clicks
    from engaged as e
    left join messages as m on m.server_id = e.server_id and m.message_id = e.message_id
),
daily as (
    select server_id, nullif(stream_key, '') as message_stream, nullif(tag_key, '') as tag, day,
           coalesce(sum(messages), 0)::BIGINT as messages,
           coalesce(sum(sent), 0)::BIGINT as sent,
           coalesce(sum(bounced), 0)::BIGINT as bounced,
           coalesce(sum(hard_bounces), 0)::BIGINT as hard_bounces,
           coalesce(sum(soft_bounces), 0)::BIGINT as soft_bounces,
           coalesce(sum(spam_complaints), 0)::BIGINT as spam_complaints,
           coalesce(sum(opens), 0)::BIGINT as opens,
           coalesce(sum(unique_opens), 0)::BIGINT as unique_opens,
           coalesce(sum(clicks), 0)::BIGINT as clicks,
           coalesce(sum(unique_clicks), 0)::BIGINT as unique_clicks
    from events
    group by server_id, stream_key, tag_key, day
)
select *,
       bounced / nullif(sent, 0) as bounce_rate,
       spam_complaints / nullif(sent, 0) as spam_rate,
       unique_opens / nullif(sent, 0) as open_rate,
       unique_clicks / nullif(sent, 0) as click_rate
from daily
