-- The sandbox's `_sandbox` calls that act like the buyer's clicks on a provider's pages
-- (approve on the 3D page, send the SMS, pay on the hosted page): for the examples and for
-- the shop's scripted buyer (examples/openresty/lua/shop/buyer.lua).
local core = require "paykit.core"
local cjson = require "cjson.safe"

local _M = {}

function _M.url()
  return (os.getenv("PAYKIT_SANDBOX_URL") or ("http://127.0.0.1:" .. (os.getenv("PAYKIT_SANDBOX_PORT") or "8790")))
    :gsub("/+$", "")
end

-- POST a JSON body to the sandbox at base .. path with a core HTTP client; returns the
-- decoded answer, or nil and what went wrong.
function _M.call(client, base, path, body)
  local res, err = client:request { method = "POST", url = base .. path, body = cjson.encode(body),
                                    headers = { ["Content-Type"] = "application/json" } }
  if not res then
    return nil, "the sandbox is not reachable at " .. base .. " (" .. tostring(err) .. "): start it with bin/paykit-sandbox start"
  end
  local json = cjson.decode(res.body)
  if res.status ~= 200 or type(json) ~= "table" then
    return nil, "sandbox " .. path .. " answered " .. res.status .. " " .. tostring(res.body)
  end
  return json
end

-- The examples' form of `call`: the sandbox at url(); exits with the message on failure.
function _M.post(path, body)
  local client = core.http_client { timeout = 10000 }
  local json, err = _M.call(client, _M.url(), path, body)
  client:close()
  if not json then
    io.stderr:write(err, "\n")
    os.exit(2)
  end
  return json
end

return _M
