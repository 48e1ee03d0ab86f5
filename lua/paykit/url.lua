--- URLs: the one parser of absolute http(s) URLs that paykit's transports, validators and
-- signers share.
-- @module paykit.url
-- @usage
-- local url = require "paykit.url"
-- url.parse("https://Service.Example:443/pay?x=1")
-- --> {scheme = "https", host = "service.example", port = 443, tls = true,
-- --   authority = "service.example", target = "/pay?x=1", path = "/pay"}
-- url.is_http("ftp://x")   --> false
local _M = {}

--- Splits an absolute http(s) URL.
-- The scheme and host are lowercased; user information, spaces and control characters are
-- refused; the fragment is dropped.
-- @function parse
-- @tparam string url an absolute http or https URL
-- @treturn table `{scheme=, host=, port=, tls=, authority=, target=, path=}`: `authority` is
--   host[:port] without a default port, `target` the path and query ("/" at least), `path`
--   the target without its query
-- @return[2] nil
-- @return[2] string the message
function _M.parse(url)
  if type(url) ~= "string" then return nil, "url must be a string" end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "url has no scheme" end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then return nil, "unsupported url scheme " .. scheme end
  local authority = rest:match("^[^/?#]*")
  local target = rest:sub(#authority + 1):gsub("#.*$", "")
  if target == "" then target = "/" elseif target:sub(1, 1) == "?" then target = "/" .. target end
  if target:find("[%s%c]") then return nil, "url has spaces or control characters" end
  if authority:find("@", 1, true) then return nil, "url with user information is not supported" end
  local host, port
  if authority:sub(1, 1) == "[" then
    host, port = authority:match("^(%[[%x:.]+%])(.*)$")
  else
    host, port = authority:match("^([^:]*)(.*)$")
  end
  if not host or host == "" then return nil, "url has no host" end
  if port == "" then
    port = scheme == "https" and 443 or 80
  else
    port = port:match("^:(%d+)$")
    port = port and tonumber(port)
    if not port or port < 1 or port > 65535 then return nil, "url has an invalid port" end
  end
  if not host:find("^%[") and (not host:find("^[%w.-]+$") or host:find("..", 1, true)
      or host:find("^[.-]")) then
    return nil, "url has an invalid host"
  end
  local default = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
  return {
    scheme = scheme, host = host:lower(), port = port, tls = scheme == "https",
    authority = default and host:lower() or (host:lower() .. ":" .. port), target = target,
    path = target:match("^[^?]*"),
  }
end

--- Whether `s` is an absolute http(s) URL that `parse` accepts, at most 2048 characters long.
-- @param s the value
-- @treturn boolean
function _M.is_http(s)
  return type(s) == "string" and #s <= 2048 and _M.parse(s) ~= nil
end

return _M
