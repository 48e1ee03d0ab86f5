-- For the examples: the sandbox's `_sandbox` calls that act like the buyer's clicks on a
-- provider's pages (approve on the 3D page, send the SMS, pay on the hosted page).
local core = require "paykit.core"
local cjson = require "cjson.safe"

local _M = {}

function _M.url()
  return (os.getenv("PAYKIT_SANDBOX_URL") or ("http://127.0.0.1:" .. (os.getenv("PAYKIT_SANDBOX_PORT") or "8790")))
    :gsub("/+$", "")
end

-- POST a JSON body to the sandbox; returns the decoded answer or exits with a message.
function _M.post(path, body)
  local client = core.http_client { timeout = 10000 }
  local res, err = client:request { method = "POST", url = _M.url() .. path, body = cjson.encode(body),
                                    headers = { ["Content-Type"] = "application/json" } }
  client:close()
  if not res then
    io.stderr:write("the sandbox is not reachable at ", _M.url(), " (", tostring(err),
      "): start it with bin/paykit-sandbox start\n")
    os.exit(2)
  end
  local json = cjson.decode(res.body)
  if res.status ~= 200 or type(json) ~= "table" then
    io.stderr:write("sandbox ", path, " answered ", res.status, "\n")
    os.exit(2)
  end
  return json
end

return _M
