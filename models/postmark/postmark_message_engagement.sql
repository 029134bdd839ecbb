-- One row per outbound message: when it was first opened and clicked, how often, by how many
-- of its recipients, and whether it bounced or drew a spam complaint.
with opens as (
    select server_id, message_id, min(received_at) as first_open_at, count(*) as opens,
           count(distinct recipient) as unique_openers
    from {{ source('postmark', 'messages_opens') }}
    group by all
),
clicks as (
    select server_id, message_id, min(received_at) as first_click_at, count(*) as clicks,
           count(distinct recipient) as unique_clickers
    from {{ source('postmark', 'messages_clicks') }}
    group by all
),
bounces as (
    select server_id, message_id,
           count(*) filter (where type <> 'SpamComplaint') as bounces,
           arg_min(type, bounced_at) filter (where type <> 'SpamComplaint') as first_bounce_type,
           count(*) filter (where type = 'SpamComplaint') as spam_complaints
    from {{ source('postmark', 'bounces') }}
    where message_id is not null
    group by all
)
select m.server_id, m.message_id, m.message_stream, nullif(m.tag, '') as tag,
       m.received_at as sent_at,
       {{ var('postmark_schema', 'main') }}.eastern_date(m.received_at) as sent_day,
       len(m.recipients) as recipients,
       o.first_open_at, coalesce(o.opens, 0) as opens, coalesce(o.unique_openers, 0) as unique_openers,
       c.first_click_at, coalesce(c.clicks, 0) as clicks, coalesce(c.unique_clickers, 0) as unique_clickers,
       coalesce(b.bounces, 0) > 0 as bounced, b.first_bounce_type,
       coalesce(b.spam_complaints, 0) > 0 as spam_complaint
from {{ source('postmark', 'messages_outbound') }} as m
left join opens as o on o.server_id = m.server_id and o.message_id = m.message_id
left join clicks as c on c.server_id = m.server_id and c.message_id = m.message_id
left join bounces as b on b.server_id = m.server_id and b.message_id = m.message_id
