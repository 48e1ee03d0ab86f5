--- OAuth 1.0 (RFC 5849), two-legged, HMAC-SHA1: how every Zippy API call is signed.
--
-- The request body (JSON) is not part of the signature; query-string parameters are.
-- @module paykit.providers.zippy_oauth
-- @usage
--   local oauth = require "paykit.providers.zippy_oauth"
--   local header = oauth.authorization{method = "GET", url = url, consumer_key = k,
--     consumer_secret = s, token = "notimplemented", nonce = n, timestamp = t, realm = "Zippy"}
local core = require "paykit.core"
local urls = require "paykit.url"

local _M = {}

local function pct(s) return core.pct_encode(tostring(s)) end

-- RFC 5849 3.4.1.2: scheme and host lowercase, default port dropped, path as sent, no query.
-- A pure function of the URL, so the last MEMO URLs' answers are kept (an instance signs the
-- same few URLs again and again; the table is emptied when full).
local MEMO = 256
local memo, memo_n = {}, 0
local function base_uri(u)
  local known = memo[u]
  if known then return known end
  local parts = urls.parse(u)
  if not parts then return nil end
  local b = parts.scheme .. "://" .. parts.authority .. parts.path
  if memo_n >= MEMO then memo, memo_n = {}, 0 end
  memo[u], memo_n = b, memo_n + 1
  return b
end
_M.base_uri = base_uri

--- The base string URI of a URL (RFC 5849 3.4.1.2).
-- Scheme and host lowercase, default port dropped, path as sent, no query.
-- @function base_uri
-- @tparam string url an absolute URL
-- @treturn ?string the base URI, or nil when url is not absolute

--- The signature base string (RFC 5849 3.4.1):
--   METHOD & pct(base URI) & pct(normalized parameters)
-- `oauth_params` is a map of the oauth_* protocol parameters (realm and oauth_signature are
-- left out if present); the query string of `url` is parsed and joins them.
-- @tparam string method the HTTP method
-- @tparam string url the request URL, with its query string
-- @tparam table oauth_params name to value
-- @treturn string the base string
-- @return[2] nil
-- @return[2] string message (not an absolute URL, or an invalid query string)
function _M.base_string(method, url, oauth_params)
  local uri = base_uri(url)
  if not uri then return nil, "not an absolute URL" end
  local params = {}
  for k, v in pairs(oauth_params) do
    if k ~= "realm" and k ~= "oauth_signature" then params[#params + 1] = { k, v } end
  end
  local query = url:match("^[^?#]*%?([^#]*)")
  if query and query ~= "" then
    local _, list = core.form_decode(query)
    if not list then return nil, "the URL's query string is not valid percent-encoding" end
    for _, kv in ipairs(list) do params[#params + 1] = kv end
  end
  return method:upper() .. "&" .. pct(uri) .. "&" .. pct(core.canonical_query(params))
end

--- The oauth_signature.
-- HMAC-SHA1 over the base string with key pct(consumer_secret) & pct(token_secret).
-- @tparam string base the base string
-- @tparam string consumer_secret
-- @tparam[opt] string token_secret (default "")
-- @treturn string base64 signature
function _M.signature(base, consumer_secret, token_secret)
  return core.hmac("sha1", pct(consumer_secret) .. "&" .. pct(token_secret or ""), base, "base64")
end

local ORDER = { "oauth_consumer_key", "oauth_nonce", "oauth_signature_method", "oauth_timestamp",
                "oauth_token", "oauth_version", "oauth_signature" }

--- The Authorization header value for one request. o: method, url, consumer_key,
-- consumer_secret, token, token_secret, nonce, timestamp, realm.
-- @tparam table o the fields above (realm optional; token_secret optional)
-- @treturn string `OAuth realm="...", oauth_consumer_key="...", ...`
-- @return[2] nil
-- @return[2] string message (see @{base_string})
function _M.authorization(o)
  local params = {
    oauth_consumer_key = o.consumer_key,
    oauth_nonce = o.nonce,
    oauth_signature_method = "HMAC-SHA1",
    oauth_timestamp = tostring(o.timestamp),
    oauth_token = o.token,
    oauth_version = "1.0",
  }
  local base, err = _M.base_string(o.method, o.url, params)
  if not base then return nil, err end
  params.oauth_signature = _M.signature(base, o.consumer_secret, o.token_secret)
  local parts = {}
  if o.realm then parts[1] = 'realm="' .. pct(o.realm) .. '"' end
  for _, k in ipairs(ORDER) do parts[#parts + 1] = k .. '="' .. pct(params[k]) .. '"' end
  return "OAuth " .. table.concat(parts, ", ")
end

local upper = string.upper
local find = string.find
local METHODS = { GET = "GET", POST = "POST", PUT = "PUT", DELETE = "DELETE", HEAD = "HEAD", PATCH = "PATCH" }

--- A signer for one set of credentials: what is fixed per instance made once.
-- The HMAC key (pct(consumer_secret) & pct(token_secret)) is prepared once
-- (`paykit.core.oauth_signer`, which keeps only the SHA-1 states after the key's pads), and so
-- are the encoded consumer key, token and realm and the fixed text of the base string and of
-- the header; a call for a URL without a query is then one C call (the base string fed to
-- SHA-1 in pieces, the MAC, its base64 and the header text), the URL's encoded base URI kept
-- for the last few URLs. A URL with a query string is signed the general way
-- (@{base_string}: its parameters join the sort). The header is the one @{authorization} makes
-- for the same fields.
-- @tparam table o `consumer_key`, `consumer_secret`, `token`, `token_secret` (optional),
--   `realm` (optional)
-- @treturn function `sign(method, url[, nonce[, timestamp]])` -> the Authorization header
--   value, or nil, message (see @{base_string}); no nonce: 16 random bytes as hex digits
--   (`paykit.core.random_hex(16)`), no timestamp: the current Unix time (`os.time()`)
function _M.signer(o)
  local ck, token = tostring(o.consumer_key), tostring(o.token)
  local hkey = pct(o.consumer_secret) .. "&" .. pct(o.token_secret or "")
  local key = core.hmac_key("sha1", hkey)
  -- the normalized parameters without a query: six names in their sorted order
  -- (oauth_consumer_key < oauth_nonce < oauth_signature_method < oauth_timestamp < oauth_token
  -- < oauth_version), encoded once more for the base string
  local b_nonce = pct("oauth_consumer_key=" .. pct(ck) .. "&oauth_nonce=")
  local b_timestamp = pct("&oauth_signature_method=HMAC-SHA1&oauth_timestamp=")
  local b_rest = pct("&oauth_token=" .. pct(token) .. "&oauth_version=1.0")
  local h_nonce = (o.realm and ('OAuth realm="' .. pct(o.realm) .. '", ') or "OAuth ")
    .. 'oauth_consumer_key="' .. pct(ck) .. '", oauth_nonce="'
  local h_timestamp = '", oauth_signature_method="HMAC-SHA1", oauth_timestamp="'
  local h_signature = '", oauth_token="' .. pct(token) .. '", oauth_version="1.0", oauth_signature="'
  local signer = core.oauth_signer(hkey, h_nonce, h_timestamp, h_signature, b_nonce, b_timestamp, b_rest)
  local uris, uris_n = {}, 0 -- url -> pct(base_uri(url)), for URLs without a query
  return function(method, url, nonce, timestamp)
    if nonce ~= nil and type(nonce) ~= "string" then nonce = tostring(nonce) end
    if timestamp ~= nil and type(timestamp) ~= "string" then timestamp = tostring(timestamp) end
    local euri = uris[url]
    if euri then return signer:header(method, euri, nonce, timestamp) end
    if type(url) == "string" and not find(url, "?", 1, true) then
      local uri = base_uri(url)
      if not uri then return nil, "not an absolute URL" end
      euri = pct(uri)
      if uris_n >= 64 then uris, uris_n = {}, 0 end
      uris[url], uris_n = euri, uris_n + 1
      return signer:header(method, euri, nonce, timestamp)
    end
    -- a query: its parameters join the sort (the general way)
    local m = METHODS[method] or upper(method)
    nonce = nonce or core.random_hex(16)
    timestamp = timestamp or tostring(os.time())
    local base, err = _M.base_string(m, url, { oauth_consumer_key = ck, oauth_nonce = nonce,
      oauth_signature_method = "HMAC-SHA1", oauth_timestamp = timestamp, oauth_token = token,
      oauth_version = "1.0" })
    if not base then return nil, err end
    return h_nonce .. pct(nonce) .. h_timestamp .. pct(timestamp) .. h_signature .. pct(key:mac(base, "base64")) .. '"'
  end
end

return _M
