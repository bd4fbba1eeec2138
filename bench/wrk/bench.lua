-- SPDX-License-Identifier: BSD-2-Clause
-- bench/wrk/bench.lua: wrk script of `make bench`.  WRK_MODE selects how
-- requests are made:
--
--   static  (default) the request wrk builds once from -H options: wrk's
--           fastest path, for every fixed-key variant
--   walk    X-API-Key = string.format(WRK_KEY_FMT, i) for i walking
--           [WRK_WALK_START, WRK_WALK_START + WRK_WALK_COUNT), split evenly
--           between the threads: every request a key never sent before
--           (a repeat is counted and reported)
--   flood   a distinct random key per request (unknown to Redis)
--   verify  POST WRK_BODY ({"key": "..."}) to the URL's path, built once
--           (api_key_verify)
--
-- done() prints one machine-readable line, "WRK key=value ...".

local mode = os.getenv("WRK_MODE") or "static"
local threads = {}
local counter = 0

function setup(thread)
    thread:set("tid", #threads)
    table.insert(threads, thread)
end

if mode == "walk" then
    local fmt = os.getenv("WRK_KEY_FMT") or "ak_miss_%032d"
    local start = tonumber(os.getenv("WRK_WALK_START") or "0")
    local count = tonumber(os.getenv("WRK_WALK_COUNT") or "100000")
    local first, last, i
    local wrapped = false
    repeats = 0

    function init(args)
        local n = tonumber(os.getenv("WRK_THREADS") or "1")
        local per = math.floor(count / n)
        first = start + tid * per
        last = first + per - 1
        i = first
    end

    function request()
        if i > last then        -- out of fresh keys: start over, count it
            i = first
            wrapped = true
        end
        if wrapped then
            repeats = repeats + 1
        end
        local key = string.format(fmt, i)
        i = i + 1
        return wrk.format(nil, nil, { ["X-API-Key"] = key })
    end

elseif mode == "flood" then
    local salt

    function init(args)
        math.randomseed(os.time() * 1000 + tid)
        salt = string.format("%08x%08x", math.random(0, 0x7fffffff),
                             math.random(0, 0x7fffffff))
    end

    function request()
        counter = counter + 1
        -- 40 characters, unique per request, unknown to Redis
        local key = string.format("flood_%s%06x%012x", salt,
                                  math.random(0, 0xffffff), counter)
        return wrk.format(nil, nil, { ["X-API-Key"] = key })
    end
end

if mode == "verify" then
    local body = os.getenv("WRK_BODY") or "{}"
    local req

    function init(args)
        req = wrk.format("POST", nil,
                         { ["Content-Type"] = "application/json" }, body)
    end

    function request()
        return req
    end
end

function done(summary, latency, requests)
    local reps = 0
    for _, t in ipairs(threads) do
        reps = reps + (tonumber(t:get("repeats")) or 0)
    end
    local e = summary.errors
    io.write(string.format(
        "WRK requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d "
        .. "p999_us=%d max_us=%d "
        .. "mean_us=%.1f non2xx=%d sock_errors=%d repeats=%d\n",
        summary.requests, summary.duration,
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50), latency:percentile(99),
        latency:percentile(99.9), latency.max, latency.mean,
        e.status, e.connect + e.read + e.write + e.timeout, reps))
end
