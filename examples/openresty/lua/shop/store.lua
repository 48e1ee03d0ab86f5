-- Where the shop keeps its payment journal: the `paykit_journal` shared dict (one nginx, every
-- worker; the default), or Redis when the shop is configured with a Redis URL (many nginx on
-- many machines; examples/openresty/shop start --redis URL, or PAYKIT_SHOP_REDIS=URL).
--
--   redis://[[user]:password@]host[:port][/db]     e.g. redis://:s3cret@10.0.0.5:6379/2
--   (user and password are percent-decoded; port 6379 and db 0 by default)
--
-- Used inside nginx (shop.init) and outside it (shop.server checks the URL before starting).
local core = require "paykit.core"

local _M = { DICT = "paykit_journal", PREFIX = "shop" }

--- The paykit.redis options of a Redis URL, or nil, message.
function _M.parse_redis_url(url)
  if type(url) ~= "string" then return nil, "the Redis URL must be a string" end
  local rest = url:match("^redis://(.+)$")
  if not rest then return nil, "the Redis URL must look like redis://[[user]:password@]host[:port][/db]" end
  local o = {}
  local auth, hostpart = rest:match("^(.*)@([^@]*)$")
  if not auth then hostpart = rest end
  if auth then
    local user, pw = auth:match("^([^:]*):(.*)$")
    if not user then return nil, "the Redis URL's credentials must be user:password or :password" end
    if user ~= "" then o.user = core.pct_decode(user) end
    o.password = core.pct_decode(pw)
    if not o.password or o.password == "" then return nil, "the Redis URL has an empty password" end
  end
  local host, port, db = hostpart:match("^([^:/]+):?(%d*)/?(%d*)$")
  if not host then return nil, "the Redis URL's host[:port][/db] is not valid" end
  o.host = host
  o.port = port ~= "" and tonumber(port) or 6379
  o.db = db ~= "" and tonumber(db) or 0
  return o
end

--- What a Redis URL may be shown as (in logs and the launcher's output): no password. The
-- user information ends at the last "@", as parse_redis_url reads it (a password may hold "@").
function _M.redacted(url)
  url = tostring(url)
  local scheme, auth, hostpart = url:match("^(%a[%w+.-]*://)(.*)@([^@]*)$")
  if not scheme then return url end
  local user = auth:match("^([^:]*):")
  return scheme .. (user and (user .. ":***") or "***") .. "@" .. hostpart
end

--- The shop's store (inside nginx): Redis for a URL, else the shared dict; or nil, err.
-- opts: timeout (ms, 1000)
function _M.new(redis_url, opts)
  local store = require "paykit.store"
  if redis_url == nil or redis_url == "" then return store.shdict(_M.DICT) end
  local o, err = _M.parse_redis_url(redis_url)
  if not o then return nil, err end
  o.timeout = opts and opts.timeout or 1000
  o.connect_timeout = o.timeout
  return store.redis(o)
end

return _M
