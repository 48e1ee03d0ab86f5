-- README's error table (issue 9, item 2) lists every code paykit returns. The codes are
-- collected from the sources, not written down here:
--
--  * in lua/paykit (the sandbox's own answers aside), comments taken out: the value of every
--    `code = ...` field (an error table: `errors.new{...}`, `errors.provider{...}`), the code
--    argument of `errors.validation/config(field, code, ...)` and
--    `errors.signature/transport/timeout(code, ...)`, of local names for them
--    (`local V = errors.validation`) and of local helpers with a `code` parameter
--    (`local function bad(field, code, message)`): every string literal in that expression
--    (`x == nil and "required" or "invalid"` gives both);
--  * the rows of the tables that map an HTTP status or a provider's code to paykit's
--    (`paykit.kit.wire.STATUS`, `paykit.providers.moka_codes`' RESULT, SUFFIX and BANK, and
--    the codes its functions answer for a code no row has), read from the loaded modules;
--  * the C core's codes: what csrc/http.c's failure_code_of returns, the codes csrc/wire.c
--    and csrc/httpparse.c fail with (transport), and money_parse's in csrc/codec.c (which
--    `paykit.money.parse` gives as validation codes).
--
-- A code the collector finds that README's "## Errors" section does not name in backticks
-- fails the spec.
local luasrc = require "spec.support.luasrc"
local codes = require "spec.support.error_codes"

local function errors_section()
  local readme = luasrc.read("README.md")
  local a = assert(readme:find("\n## Errors\n", 1, true), "README has no ## Errors section")
  local b = readme:find("\n## ", a + 5, true) or #readme
  return readme:sub(a, b)
end

-- The backticked names of a text; `journal_<state>` also names the computed "journal_*".
local function named(section)
  local set = {}
  for c in section:gmatch("`([^`\n]+)`") do
    set[c] = true
    local prefix = c:match("^([%w_.]+)<[%w_]+>$")
    if prefix then set[prefix .. "*"] = true end
  end
  return set
end

local function missing(found, set)
  local out = {}
  for c, where in pairs(found) do
    if not set[c] then out[#out + 1] = c .. " (" .. where .. ")" end
  end
  table.sort(out)
  return out
end

describe("README's error table", function()
  it("finds the codes the spec knows are there (the collector works)", function()
    local lua, tables, c = codes.lua(), codes.tables(), codes.c()
    for _, code in ipairs { "unknown_field", "required", "journal_unavailable", "store_timeout", "blocking_phase",
                            "session_mismatch", "reference_mismatch", "raw_query_required", "invalid_luhn",
                            "unknown_key", "bad_signature", "unsigned", "malformed", "too_old", "moka.invalid_response" } do
      assert(lua[code], "the collector missed " .. code)
    end
    assert.is_truthy(tables.not_found)
    assert.is_truthy(tables["moka.invalid_account"])
    assert.is_truthy(tables["moka.bank.insufficient_limit"])
    for _, code in ipairs { "dns", "connect", "connect_timeout", "timeout", "tls", "tls_verify", "send", "recv",
                            "protocol", "too_large", "other" } do
      assert(c[code], "the collector missed the C core's " .. code)
    end
  end)

  it("fails for a code that is not in the table", function()
    local set = named("| a | `x` |")
    assert.same({ "y (here)" }, missing({ x = "there", y = "here" }, set))
  end)

  it("names every code the sources produce", function()
    local set = named(errors_section())
    local all = codes.all()
    local n = 0
    for _ in pairs(all) do n = n + 1 end
    assert.is_true(n > 100, "codes found: " .. n)
    local m = missing(all, set)
    assert(#m == 0, #m .. " codes are missing from README's ## Errors section:\n  " .. table.concat(m, "\n  "))
  end)
end)
