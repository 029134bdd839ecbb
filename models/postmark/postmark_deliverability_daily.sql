-- Deliverability per US-Eastern day (Postmark's calendar), server, message stream and tag:
-- sent (one per recipient, as Postmark counts), bounces (hard, soft; spam complaints apart),
-- opens, clicks, and their rates over sent. Each event counts on the day it happened, as in
-- Postmark's stats. An empty tag counts as untagged (null).
with events as (
    select server_id, coalesce(message_stream, '') as stream_key, coalesce(tag, '') as tag_key,
           {{ var('postmark_schema', 'main') }}.eastern_date(received_at) as day,
           count(*) as messages, sum(len(recipients)) as sent
    from {{ source('postmark', 'messages_outbound') }}
    group by all
    union all by name
    select server_id, coalesce(message_stream, '') as stream_key, coalesce(tag, '') as tag_key,
           {{ var('postmark_schema', 'main') }}.eastern_date(bounced_at) as day,
           count(*) filter (where type <> 'SpamComplaint') as bounced,
           count(*) filter (where type = 'HardBounce') as hard_bounces,
           count(*) filter (where type in ('SoftBounce', 'Transient')) as soft_bounces,
           count(*) filter (where type = 'SpamComplaint') as spam_complaints
    from {{ source('postmark', 'bounces') }}
    group by all
    union all by name
    select server_id, coalesce(message_stream, '') as stream_key, coalesce(tag, '') as tag_key,
           {{ var('postmark_schema', 'main') }}.eastern_date(received_at) as day,
           count(*) as opens, count(distinct (message_id, recipient)) as unique_opens
    from {{ source('postmark', 'messages_opens') }}
    group by all
    union all by name
    select server_id, coalesce(message_stream, '') as stream_key, coalesce(tag, '') as tag_key,
           {{ var('postmark_schema', 'main') }}.eastern_date(received_at) as day,
           count(*) as clicks, count(distinct (message_id, recipient)) as unique_clicks
    from {{ source('postmark', 'messages_clicks') }}
    group by all
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
