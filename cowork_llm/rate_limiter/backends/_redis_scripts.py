"""The Lua scripts of the ``redis`` backend: each ask, release, pause and renewal is one
atomic script, so one admission is one round trip and every timestamp the group compares
comes from one clock, Redis's ``TIME`` (allowed in scripts since Redis 5, which
replicates script effects; the only mode from Redis 7).

Every script takes its keys in KEYS (one limiter's keys share the hash tag ``{key}``, so
they live on one Cluster node) and the wake-up lists of other members by name, built
from a prefix with the same tag. ARGV[1] of every script is the host's clock in ms, or
``''`` to read Redis's clock (the host clock is the fallback for servers that forbid
``TIME`` in scripts; see :mod:`.redis`).

Answers are strings where a number may be fractional (Redis truncates Lua numbers), and
instants are written with ``ms()``: Lua's ``tostring`` (and Redis's conversion of a
number argument) keeps 14 digits, a tenth of a millisecond on a clock in ms since 1970.
"""

__all__ = ["ACQUIRE", "RELEASE", "RENEW", "LEAVE", "PAUSE", "CLOCK_CHECK"]

# Shared prelude: the clock, and waking the member at the front of the queue.
_PRELUDE = """
local function ms(value) return string.format('%.3f', value) end
local function clock_ms(host)
    if host ~= '' then return tonumber(host) end
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local function wake_front(queue, wake_prefix, value, ttl_ms)
    local front = redis.call('ZRANGE', queue, 0, 0)[1]
    if front then
        local list = wake_prefix .. front
        redis.call('DEL', list)
        redis.call('RPUSH', list, value)
        redis.call('PEXPIRE', list, ttl_ms)
    end
end
"""

# KEYS: 1 requests (zset, score = start ms), 2 tokens (hash: level, at), 3 pause (string:
# until ms), 4 queue (zset, score = ticket), 5 ticket counter, 6 alive (zset, score =
# alive-until ms), 7 generation, 8 leases (zset, score = expiry ms), 9 the provider view
# (read only: returned on admission, so the charge that follows is one compare-and-set)
# ARGV: 1 host clock or '', 2 member, 3 known generation or '', 4 ask valid until (ms, 0:
# always), 5 ticket alive ms, 6 weight, 7 tokens, 8 rates "limit:window,...", 9 tokens
# per window (0: none), 10 token window ms, 11 lost-state pause ms, 12 max leases (0: not
# shared), 13 lease ms, 14 lease id, 15 wake-list prefix, 16 ghosts "m1,m2", 17 queued (1/0),
# 18 reservation lead ms (0: none), 19 the adaptive view's demand "name:amount,..." ('':
# none), 20 the view's time to live ms
# Returns {code, wait ms, now ms, generation, lost, view, marks}: on admission with a
# demand, marks "name:total,..." when this script charged the view (nothing is learned
# in it: only the cumulative counters move, as _provider_view._charge does then), else
# view is the view's text ('' when absent) for the caller's compare-and-set charge;
# code 0 admitted (wait ms > 0: a
# reservation, start that much after now), 1 wait this long, 2 behind the front (a
# wake-up comes), 3 every lease is out (a release wakes), 4 the ask expired before it ran
# (its member gave up on it).
ACQUIRE = _PRELUDE + """
local now = clock_ms(ARGV[1])
local valid_until = tonumber(ARGV[4])
if valid_until > 0 and now > valid_until then return {4, '0', ms(now), '', 0, '', ''} end
local member, queued = ARGV[2], ARGV[17] == '1'
local alive_ms, wake_prefix = tonumber(ARGV[5]), ARGV[15]
for ghost in string.gmatch(ARGV[16], '[^,]+') do
    redis.call('ZREM', KEYS[4], ghost)
    redis.call('ZREM', KEYS[6], ghost)
end
-- Lost state: the generation key is missing (FLUSHALL, a restart without persistence)
-- or differs from the one this member knew. Hold the group one full interval.
local gen, lost = redis.call('GET', KEYS[7]), 0
if not gen then
    gen = member .. '@' .. tostring(now)
    redis.call('SET', KEYS[7], gen)
    if ARGV[3] ~= '' then lost = 1 end
elseif ARGV[3] ~= '' and ARGV[3] ~= gen then
    lost = 1
end
local pause_until = tonumber(redis.call('GET', KEYS[3]) or '0')
if lost == 1 and tonumber(ARGV[11]) > 0 and now + tonumber(ARGV[11]) > pause_until then
    pause_until = now + tonumber(ARGV[11])
    redis.call('SET', KEYS[3], ms(pause_until), 'PX', math.ceil(tonumber(ARGV[11])) + 1)
end
local function answer(code, wait, view, marks)
    return {code, ms(wait), ms(now), gen, lost, view or '', marks or ''}
end
-- The queue: take a ticket, stay alive, skip dead tickets in front.
if queued then
    if not redis.call('ZSCORE', KEYS[4], member) then
        redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[5]), member)
    end
    redis.call('ZADD', KEYS[6], now + alive_ms, member)
    local skipped = false
    while true do
        local front = redis.call('ZRANGE', KEYS[4], 0, 0)[1]
        if front == member then break end
        if tonumber(redis.call('ZSCORE', KEYS[6], front) or '0') >= now then
            if skipped then wake_front(KEYS[4], wake_prefix, '0', alive_ms) end
            return answer(2, 0)
        end
        redis.call('ZREM', KEYS[4], front)
        redis.call('ZREM', KEYS[6], front)
        skipped = true
    end
    redis.call('DEL', wake_prefix .. member)
end
local function stay_alive(wait)
    if queued then redis.call('ZADD', KEYS[6], now + alive_ms + wait, member) end
end
if pause_until > now then
    stay_alive(pause_until - now)
    return answer(1, pause_until - now)
end
-- The shared concurrency cap: leases that expire unless renewed.
local max_leases = tonumber(ARGV[12])
if max_leases > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', now)
    if redis.call('ZCARD', KEYS[8]) >= max_leases then
        local first = redis.call('ZRANGE', KEYS[8], 0, 0, 'WITHSCORES')
        stay_alive(tonumber(first[2]) - now)
        return answer(3, tonumber(first[2]) - now)
    end
end
-- The request rates: a log of starts; a rate "limit per window" refuses while limit
-- starts lie in (now - window, now]; the wait ends when the oldest that counts leaves.
local weight = tonumber(ARGV[6])
local function rates_wait(w)
    local wait, longest = 0, 0
    for limit, window in string.gmatch(ARGV[8], '([%d.]+):([%d.]+)') do
        limit, window = tonumber(limit), tonumber(window)
        if window > longest then longest = window end
        local from = '(' .. ms(now - window)
        local count = redis.call('ZCOUNT', KEYS[1], from, '+inf')
        if count + w > limit then
            local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], from, '+inf', 'WITHSCORES',
                                      'LIMIT', count + w - limit - 1, 1)
            local until_free = tonumber(oldest[2]) + window - now
            if until_free > wait then wait = until_free end
        end
    end
    return wait, longest
end
local wait, longest = rates_wait(weight)
local tokens_short = false
-- The token budget: a bucket of ARGV[9] tokens refilling continuously over ARGV[10] ms.
local tokens, capacity, refill_ms = tonumber(ARGV[7]), tonumber(ARGV[9]), tonumber(ARGV[10])
local level = capacity
if capacity > 0 and tokens > 0 then
    local state = redis.call('HMGET', KEYS[2], 'level', 'at')
    if state[1] then
        level = math.min(capacity, tonumber(state[1]) + (now - tonumber(state[2])) * capacity / refill_ms)
    elseif lost == 1 then
        level = 0  -- the budget spent before the loss is unknown: start empty
    end
    if level < tokens then
        tokens_short = true
        local until_tokens = (tokens - level) * refill_ms / capacity
        if until_tokens > wait then wait = until_tokens end
    end
end
-- A reservation: only the rates stand in the way, and they free a slot within the lead.
-- The start is recorded at that instant (after every start in the log), the member
-- starts then: its sleep's overshoot and this round trip are not added to the interval.
local start = now
if wait > 0 and not tokens_short and wait <= tonumber(ARGV[18]) then
    start = now + wait
elseif wait > 0 then
    stay_alive(wait)
    return answer(1, wait)
end
-- Admitted: record the start, spend the tokens, take a lease, leave the queue.
for i = 1, weight do
    redis.call('ZADD', KEYS[1], ms(start), member .. '@' .. ms(start) .. '#' .. i)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest)
redis.call('PEXPIRE', KEYS[1], math.ceil(longest) + 1000)
if capacity > 0 and tokens > 0 then
    redis.call('HSET', KEYS[2], 'level', tostring(level - tokens), 'at', ms(now))
    redis.call('PEXPIRE', KEYS[2], math.ceil(refill_ms) * 2)
end
if max_leases > 0 then
    redis.call('ZADD', KEYS[8], now + tonumber(ARGV[13]), ARGV[14])
    redis.call('PEXPIRE', KEYS[8], math.ceil(tonumber(ARGV[13])) * 2)
end
if queued then
    redis.call('ZREM', KEYS[4], member)
    redis.call('ZREM', KEYS[6], member)
    -- The next member learns when its turn can come (an instant on this clock, so the
    -- time the wake-up takes to reach it is not added): it sleeps until then.
    local next_wait = rates_wait(1)
    wake_front(KEYS[4], wake_prefix, ms(now + next_wait), alive_ms)
end
local view = redis.call('GET', KEYS[9]) or ''
if ARGV[19] == '' then return answer(0, start - now, view) end
-- The view's charge. Unreadable text starts afresh, as the Python side does.
local ok, state = pcall(cjson.decode, view)
if view == '' or not ok or type(state) ~= 'table' then state = {} end
if type(state.dims) == 'table' and next(state.dims) ~= nil then
    return answer(0, start - now, view)  -- limits learned: the caller's model decides
end
state.dims = {}
if type(state.charged) ~= 'table' then state.charged = {} end
local marks = {}
for name, need in string.gmatch(ARGV[19], '([%w_]+):([%d.eE+-]+)') do
    local total = (tonumber(state.charged[name]) or 0) + tonumber(need)
    state.charged[name] = total
    marks[#marks + 1] = name .. ':' .. string.format('%.17g', total)
end
redis.call('SET', KEYS[9], cjson.encode(state), 'PX', ARGV[20])
return answer(0, start - now, '', table.concat(marks, ','))
"""

# KEYS: 1 leases, 2 queue. ARGV: 1 host clock or '', 2 wake prefix, 3 wake ttl ms, 4.. lease ids.
RELEASE = _PRELUDE + """
local removed = 0
for i = 4, #ARGV do removed = removed + redis.call('ZREM', KEYS[1], ARGV[i]) end
if removed > 0 then wake_front(KEYS[2], ARGV[2], '0', tonumber(ARGV[3])) end
return removed
"""

# KEYS: 1 leases. ARGV: 1 host clock or '', 2 lease ms, 3.. lease ids. Only leases still
# held are renewed (XX): an expired one was given to someone else's count already.
RENEW = _PRELUDE + """
local now = clock_ms(ARGV[1])
local until_ms = now + tonumber(ARGV[2])
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], 'XX', until_ms, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) * 2)
return 0
"""

# KEYS: 1 queue, 2 alive. ARGV: 1 host clock or '', 2 wake prefix, 3 wake ttl ms, 4.. members.
LEAVE = _PRELUDE + """
local front = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
for i = 4, #ARGV do
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('DEL', ARGV[2] .. ARGV[i])
end
if redis.call('ZRANGE', KEYS[1], 0, 0)[1] ~= front then
    wake_front(KEYS[1], ARGV[2], '0', tonumber(ARGV[3]))
end
return 0
"""

# KEYS: 1 pause. ARGV: 1 host clock or '', 2 pause ms, 3 '1' to only read.
# Returns the ms of pause left (a string).
PAUSE = _PRELUDE + """
local now = clock_ms(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[3] ~= '1' and now + tonumber(ARGV[2]) > current then
    current = now + tonumber(ARGV[2])
    redis.call('SET', KEYS[1], ms(current), 'PX', math.ceil(tonumber(ARGV[2])) + 1)
end
return tostring(math.max(0, current - now))
"""

# Whether this server lets a script write after reading TIME (managed services that
# replicate scripts verbatim do not). KEYS: 1 a scratch key.
CLOCK_CHECK = """
local t = redis.call('TIME')
redis.call('SET', KEYS[1], t[1], 'PX', 1000)
return t
"""
