-- Why mail bounced: bounces per server, message stream and bounce type (with Postmark's name
-- and description of the type), the addresses involved, how many were deactivated, and when
-- the type was first and last seen.
select server_id, message_stream, type, type_code, name, description,
       count(*) as bounces,
       count(distinct email) as addresses,
       count(*) filter (where inactive) as deactivated,
       min(bounced_at) as first_bounced_at,
       max(bounced_at) as last_bounced_at
from {{ source('postmark', 'bounces') }}
group by all
