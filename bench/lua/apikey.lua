-- SPDX-License-Identifier: BSD-2-Clause
-- bench/lua/apikey.lua: the API-key check as a Lua gateway plugin does it
-- (the "Lua" variant of `make bench`), reading the same Redis records as the
-- module:
--
--   X-API-Key -> SHA-256 (OpenSSL's SHA256() through LuaJIT FFI) -> hex
--   -> lua_shared_dict "apikeys" (ttl; "no such key" remembered too)
--   -> on a miss: HGETALL apikey:<hex> through resty.redis, keepalive pool
--   -> status / expires_at checked; 401 otherwise.
--
-- It does not implement ips/referrers/rate: it is compared with the
-- module's plain cached-key and cache-miss variants.

local ffi = require "ffi"
local bit = require "bit"

local ok_redis, redis = pcall(require, "resty.redis")
if not ok_redis then
    redis = require "nginx.redis"       -- Debian's lua-nginx-redis
end

ffi.cdef [[
unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
]]

-- libcrypto is already loaded in nginx (it links OpenSSL): use the global
-- namespace, else load it by name.
local crypto = ffi.C
if not pcall(function() return crypto.SHA256 end) then
    crypto = ffi.load("libcrypto.so.3")
end

local ngx = ngx
local byte_t = ffi.typeof("const unsigned char *")
local md = ffi.new("unsigned char[32]")
local hexbuf = ffi.new("char[64]")
local hexdigits = ffi.new("const char[17]", "0123456789abcdef")
local rshift, band = bit.rshift, bit.band

local _M = {}
local conf = {}
local cache

local function sha256_hex(s)
    crypto.SHA256(ffi.cast(byte_t, s), #s, md)
    for i = 0, 31 do
        local b = md[i]
        hexbuf[2 * i] = hexdigits[rshift(b, 4)]
        hexbuf[2 * i + 1] = hexdigits[band(b, 15)]
    end
    return ffi.string(hexbuf, 64)
end

function _M.init(c)
    conf = c
    conf.prefix = conf.prefix or "apikey:"
    conf.ttl = conf.ttl or 60
    conf.negative_ttl = conf.negative_ttl or 5
    conf.timeout_ms = conf.timeout_ms or 100
end

-- HGETALL; returns the record as a table, false when there is none,
-- nil + error when Redis cannot answer
local function fetch(hex)
    local r = redis:new()
    r:set_timeout(conf.timeout_ms)
    local ok, err = r:connect(conf.redis_host, conf.redis_port)
    if not ok then
        return nil, err
    end
    local res
    res, err = r:hgetall(conf.prefix .. hex)
    if not res then
        r:close()
        return nil, err
    end
    r:set_keepalive(60000, 64)
    if #res == 0 then
        return false
    end
    local rec = {}
    for i = 1, #res, 2 do
        rec[res[i]] = res[i + 1]
    end
    return rec
end

-- cached value: "-" (no such key) or "status\texpires_at\towner\tplan"
local function encode(rec)
    if not rec then
        return "-"
    end
    return (rec.status or "active") .. "\t" .. (rec.expires_at or "0") .. "\t"
           .. (rec.owner or "") .. "\t" .. (rec.plan or "")
end

function _M.check()
    local key = ngx.var.http_x_api_key
    if not key or #key == 0 or #key > 256 then
        return ngx.exit(401)
    end

    if not cache then
        cache = ngx.shared.apikeys
    end

    local hex = sha256_hex(key)
    local v = cache:get(hex)

    if v == nil then
        local rec, err = fetch(hex)
        if rec == nil then
            ngx.log(ngx.ERR, "apikey: redis: ", err)
            return ngx.exit(503)
        end
        v = encode(rec)
        cache:set(hex, v, rec and conf.ttl or conf.negative_ttl)
    end

    if v == "-" then
        return ngx.exit(401)
    end

    local status, expires, owner, plan = v:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    if status ~= "active" then
        return ngx.exit(401)
    end
    local exp = tonumber(expires) or 0
    if exp > 0 and exp <= ngx.time() then
        return ngx.exit(401)
    end
    ngx.ctx.api_key_owner = owner
    ngx.ctx.api_key_plan = plan
end

return _M
