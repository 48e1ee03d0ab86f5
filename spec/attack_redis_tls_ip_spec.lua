-- "TLS is verified by default ... in every transport" (README "Security notes") and, for the
-- journal's Redis inside nginx, "the cosocket does the handshake (verified against
-- lua_ssl_trusted_certificate)". nginx checks a certificate's name only against the name
-- given to sslhandshake, and paykit.cosocket refuses an https URL whose host is an IP address
-- with verification on for that reason. The same attack on paykit.redis: a Redis reached by
-- its IP address over TLS presents a certificate from the trusted CA issued for another name
-- (anyone the CA ever certified could present one). It must never be accepted as the Redis
-- at that address. The control: the same server by the name its certificate carries.
local nginx = require "spec.support.nginx"
local rs = require "spec.support.redis"
local core = require "paykit.core"
local cjson = require "cjson"

local PORT, REDIS_PORT, TLS_PORT, PW = 18967, 16590, 16591, "tls-ip-pw"

local CONF = [=[
  lua_ssl_trusted_certificate ${CERTS}/ca.crt;
  lua_ssl_verify_depth 2;
  server {
    listen 127.0.0.1:${PORT};
    location = /ping {
      content_by_lua_block {
        local cjson = require "cjson"
        local a = ngx.req.get_uri_args()
        local r = require("paykit.redis").new { host = a.host, port = tonumber(a.port), password = "${PW}",
          tls = true, server_name = a.sni, pool_size = 1 }
        local v, err, code = r:call("PING")
        ngx.say(cjson.encode { value = v, error = err and tostring(type(err) == "table" and err.message or err), code = code })
      }
    }
  }
]=]

describe("paykit.redis over TLS inside nginx, reached by an IP address", function()
  local srv, redis
  lazy_setup(function()
    local certs = rs.tls_certs("redis-tls-ip")
    redis = rs.start { port = REDIS_PORT, password = PW, extra = {
      "tls-port " .. TLS_PORT, "tls-cert-file " .. certs .. "/server.crt", "tls-key-file " .. certs .. "/server.key",
      "tls-ca-cert-file " .. certs .. "/ca.crt", "tls-auth-clients no" } }
    srv = nginx.start("redis_tls_ip", CONF, { PORT = PORT, CERTS = certs, PW = PW })
  end)
  lazy_teardown(function()
    if srv then srv:stop() end
    if redis then redis:stop() end
  end)

  local function ping(q)
    local c = core.http_client { timeout = 10000 }
    local res = assert(c:request { method = "GET", url = "http://127.0.0.1:" .. PORT .. "/ping?" .. q })
    c:close()
    assert.are.equal(200, res.status, res.body .. srv:error_log())
    return cjson.decode(res.body)
  end

  it("talks to it by the name its certificate carries (the control)", function()
    local r = ping("host=127.0.0.1&port=" .. TLS_PORT .. "&sni=localhost")
    assert.are.equal("PONG", r.value, cjson.encode(r))
  end)

  it("never accepts a certificate for another name from the IP address it dialled", function()
    for i = 1, 10 do
      local r = ping("host=127.0.0.1&port=" .. TLS_PORT)
      assert.are_not.equal("PONG", r.value, "try " .. i .. ": a certificate for localhost accepted as 127.0.0.1")
      assert.is_string(r.error)
    end
  end)
end)
