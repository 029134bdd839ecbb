-- Where mail is read and clicked: opens and clicks per server, message stream, platform
-- (Desktop, Mobile, WebMail, Unknown), client family (the email client for opens, the browser
-- for clicks) and operating system family, with each row's share of its event's total.
with events as (
    select server_id, message_stream, 'open' as event, platform,
           client.family as client_family, os.family as os_family, message_id, recipient
    from {{ source('postmark', 'messages_opens') }}
    union all
    select server_id, message_stream, 'click' as event, platform,
           client.family as client_family, os.family as os_family, message_id, recipient
    from {{ source('postmark', 'messages_clicks') }}
),
mix as (
    select server_id, message_stream, event, platform, client_family, os_family,
           count(*) as events, count(distinct (message_id, recipient)) as recipients
    from events
    group by all
)
select *, events / sum(events) over (partition by server_id, message_stream, event) as share
from mix
