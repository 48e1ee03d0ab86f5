-- "No error, log line or printed table ever contains ... a password ... or an API secret"
-- (README "Errors", "Security notes"). A merchant prints objects with whatever is at hand:
-- tostring, paykit.redact.dump, cjson.encode, a generic inspect that walks pairs(). So the
-- spec walks every table reachable through pairs() from the objects a merchant holds (provider
-- instances, a journaled gateway, the journal, its Redis store and client) and searches every
-- key and string value for the secrets, and for a hex digest of them (a short unsalted hash of
-- a password is a password to anyone with a dictionary). No network.
local paykit = require "paykit"
local core = require "paykit.core"
local redact = require "paykit.redact"
local journal = require "paykit.journal"
local store = require "paykit.store"
local redis = require "paykit.redis"

local SECRETS = { "moka-password-7", "mocopay-secret-7", "zippy-consumer-secret-7", "zippy-notice-secret-7",
                  "redis-password-7" }

-- every text that would give a secret away: the secret and its digests (any 12 hex digits of one)
local function giveaways()
  local out = {}
  for _, s in ipairs(SECRETS) do
    out[#out + 1] = { what = s, plain = s }
    for _, d in ipairs { "md5", "sha1", "sha256" } do
      out[#out + 1] = { what = d .. "(" .. s .. ")", hex = core.digest(d, s, "hex") }
    end
  end
  return out
end

local function leaks(text)
  for _, g in ipairs(giveaways()) do
    if g.plain and text:find(g.plain, 1, true) then return g.what end
    if g.hex then
      for i = 1, #g.hex - 11 do
        if text:find(g.hex:sub(i, i + 11), 1, true) then return g.what end
      end
    end
  end
  return nil
end

-- every key and string value reachable through pairs() (what a generic inspect prints)
local function walk(root)
  local seen, found = {}, {}
  local function visit(v, path)
    if type(v) == "string" then
      local l = leaks(v)
      if l then found[#found + 1] = path .. " holds " .. l end
    elseif type(v) == "table" and not seen[v] then
      seen[v] = true
      for k, x in pairs(v) do
        visit(k, path .. "[key]")
        visit(x, path .. "." .. tostring(k))
      end
    end
  end
  visit(root, "obj")
  return found
end

local function printed(obj)
  local texts = { tostring(obj), redact.dump(obj) }
  local ok, json = pcall(require("cjson").encode, obj)
  if ok then texts[#texts + 1] = json end
  local found = {}
  for _, t in ipairs(texts) do
    local l = leaks(t)
    if l then found[#found + 1] = "printed: " .. l end
  end
  return found
end

describe("objects a merchant may print", function()
  local objects
  setup(function()
    local moka = assert(paykit.moka { dealer_code = "1730", username = "u", password = "moka-password-7",
      base_url = "http://127.0.0.1:9/moka" })
    local mocopay = assert(paykit.mocopay { api_key = "app", api_secret = "mocopay-secret-7",
      base_url = "http://127.0.0.1:9/mocopay" })
    local zippy = assert(paykit.zippy { consumer_key = "k", consumer_secret = "zippy-consumer-secret-7",
      notice_keys = { [0] = "zippy-notice-secret-7" }, base_url = "http://127.0.0.1:9/zippy" })
    -- a Redis store is only configured here (no command is sent): nothing listens on port 9
    local s = assert(store.redis { host = "127.0.0.1", port = 9, password = "redis-password-7", user = "app" })
    local j = assert(journal.new { store = s })
    objects = {
      moka = moka, mocopay = mocopay, zippy = zippy,
      journaled = j:wrap(moka), journal = j, redis_store = s,
      redis_client = assert(redis.new { host = "127.0.0.1", port = 9, password = "redis-password-7" }),
      cluster_client = assert(redis.new { cluster = true, nodes = { "127.0.0.1:9" }, password = "redis-password-7" }),
    }
  end)

  for _, name in ipairs { "moka", "mocopay", "zippy", "journaled", "journal", "redis_store", "redis_client", "cluster_client" } do
    it(name .. ": no secret, nor a digest of one, in any table it reaches or in its printed forms", function()
      local obj = objects[name]
      assert.are.same({}, walk(obj))
      assert.are.same({}, printed(obj))
    end)
  end

  it("the walk finds a secret where there is one (the control)", function()
    assert.are.same({ "obj.deep.x holds redis-password-7" }, walk { deep = { x = "redis-password-7" } })
    assert.are.equal(1, #walk { h = core.digest("sha256", "moka-password-7", "hex"):sub(5, 20) })
  end)
end)
