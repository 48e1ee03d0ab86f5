-- "TLS 1.2 minimum in every transport" (README "Security notes"), attacked with a server that
-- speaks only TLS 1.1 (OpenSSL's own `openssl s_server -tls1_1` on 127.0.0.1) and a client
-- whose system OpenSSL policy allows TLS 1.0/1.1 (OPENSSL_CONF pointing at a permissive
-- configuration, as on systems whose openssl.cnf sets no MinProtocol): Debian's default policy
-- refuses TLS 1.1 by itself, which would hide a transport that sets no minimum of its own.
--   * wire and libcurl (a child process under the permissive policy) must refuse;
--   * cosockets take nginx's lua_ssl_protocols: with the line README's nginx.conf gives they
--     must refuse too (the spec reads that line from README, so it attacks what is documented).
local nginx = require "spec.support.nginx"

local TLS11_PORT, FRONT = 18971, 18972
local runtime = (type(jit) == "table") and "luajit" or "lua5.4"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1")); local out = p:read("*a"); p:close()
  return out
end

local function readme_protocols()
  local f = assert(io.open("README.md")); local readme = f:read("*a"); f:close()
  local section = assert(readme:match("\n## OpenResty\n(.-)\n## "), "README has no OpenResty section")
  local conf = assert(section:match("```nginx\n(http {.-\n})\n```"), "no nginx http{} block in README's OpenResty section")
  return conf:match("\n%s*(lua_ssl_protocols [^;\n]*;)")
end

describe("a server that offers only TLS 1.1", function()
  local dir, server_pid, policy
  lazy_setup(function()
    dir = nginx.root() .. "/build/run/attack-tls"
    sh("rm -rf '" .. dir .. "' && mkdir -p '" .. dir .. "'")
    sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost"
      .. " -keyout '" .. dir .. "/key.pem' -out '" .. dir .. "/cert.pem'")
    policy = dir .. "/permissive.cnf"
    local f = assert(io.open(policy, "w"))
    f:write("openssl_conf = c\n[c]\nssl_conf = s\n[s]\nsystem_default = d\n[d]\nMinProtocol = TLSv1\n",
            "CipherString = DEFAULT:@SECLEVEL=0\n")
    f:close()
    server_pid = tonumber(sh("cd '" .. dir .. "' && (openssl s_server -accept 127.0.0.1:" .. TLS11_PORT
      .. " -cert cert.pem -key key.pem -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' -www >s_server.log 2>&1 </dev/null & echo $!)"))
    assert(server_pid, "s_server started")
    -- the control: under the permissive policy a TLS 1.1 client gets an answer from it
    local ok
    for _ = 1, 50 do
      local out = sh("OPENSSL_CONF='" .. policy .. "' openssl s_client -connect 127.0.0.1:" .. TLS11_PORT
        .. " -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' </dev/null")
      ok = out:find("Protocol%s*:%s*TLSv1%.1") ~= nil
      if ok then break end
      sh("sleep 0.1")
    end
    assert(ok, "the TLS 1.1 server answers a TLS 1.1 client (the control)")
  end)
  lazy_teardown(function()
    if server_pid then sh("kill " .. server_pid) end
  end)

  for _, transport in ipairs { "wire", "curl" } do
    it("is refused by the " .. transport .. " transport, whatever the system's OpenSSL policy allows", function()
      local script = dir .. "/client.lua"
      local f = assert(io.open(script, "w"))
      f:write(([[
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/%s/?.so;" .. package.cpath
local http = require "paykit.http"
local c = http.new { transport = %q, cafile = %q, retry = false, timeout = 10 }
local r, err = c:request { method = "GET", url = "https://localhost:%d/" }
io.write(r and ("answered " .. r.status) or ("refused " .. err.code))
]]):format(runtime, transport, dir .. "/cert.pem", TLS11_PORT))
      f:close()
      local out = sh("OPENSSL_CONF='" .. policy .. "' " .. runtime .. " '" .. script .. "'")
      assert.are.equal("refused tls", out:match("refused %S+") or out)
    end)
  end

  it("is refused by cosockets with README's lua_ssl_protocols, under a permissive OpenSSL policy", function()
    local line = readme_protocols()
    assert.is_string(line, "README's nginx.conf names lua_ssl_protocols (nginx's default allows TLSv1 and TLSv1.1)")
    assert.is_nil(line:find("TLSv1[%s;]") or line:find("TLSv1%.1"), "README's lua_ssl_protocols allows no TLS below 1.2")
    local prefix = dir .. "/nginx"
    local conf = nginx.config(line .. [[

  server {
    listen 127.0.0.1:${FRONT};
    location = /t {
      content_by_lua_block {
        local http = require "paykit.http"
        -- an IP address: nginx checks names only through SNI, so verification is off here;
        -- the protocol is negotiated before any certificate check
        local c = http.new { retry = false, verify_tls = false, timeout = 10 }
        local r, err = c:request { method = "GET", url = "https://127.0.0.1:${UP}/" }
        ngx.print(r and ("answered " .. r.status) or ("refused " .. err.code))
      }
    }
  }]], { ROOT = nginx.root(), PREFIX = prefix, LUA_PATH = select(1, nginx.lua_paths(nginx.root())),
         LUA_CPATH = select(2, nginx.lua_paths(nginx.root())), MODULES = nginx.module_dir, WORKERS = 1,
         LOG_LEVEL = "warn", FRONT = FRONT, UP = TLS11_PORT })
    sh("mkdir -p '" .. prefix .. "/logs' '" .. prefix .. "/tmp'")
    local f = assert(io.open(prefix .. "/nginx.conf", "w")); f:write(conf); f:close()
    local srv = nginx.handle("attack-tls", prefix)
    srv:stop()
    local started = sh("env -u LUA_PATH -u LUA_CPATH OPENSSL_CONF='" .. policy .. "' nginx -p '" .. prefix
      .. "' -c '" .. prefix .. "/nginx.conf' -e '" .. prefix .. "/logs/error.log' && echo started")
    assert.is_truthy(started:find("started"), started)
    local out
    for _ = 1, 50 do
      out = sh("curl -s http://127.0.0.1:" .. FRONT .. "/t")
      if out ~= "" then break end
      sh("sleep 0.1")
    end
    srv:stop()
    assert.are.equal("refused tls", out)
  end)
end)
