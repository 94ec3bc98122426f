"""Every Lua script the system runs in Redis, and the function library producers call.

Each script is one atomic step, and every key it touches arrives in ``KEYS``. The life of an
expiring key, in the names of ``shared.names``:

1. an application writes it with a TTL: plain ``SET … PX``, or ``FCALL expiry_register``, which
   also records its deadline in ``expiry:due`` (a *registered* key);
2. the listeners hear what happens to it (``HEAR``): arming and moving it (``expire``)
   registers its deadline, ``PERSIST`` and ``DEL`` cancel it; its expiry (``expired``) is
   claimed once per *instance*, a key and the deadline it was armed with. A registered key
   whose event nobody claimed is claimed by the sweeper (``SWEEP_SCAN`` then
   ``SWEEP_CLAIM``). A claim gets an id and a lease in ``expiry:leases``;
3. the claim is published to JetStream; the pull worker that receives it checks the lease is
   still held (``BEGIN``), runs the handler, and *completes* the claim (``COMPLETE``): the
   lease goes, the counters move once. A second delivery finds no lease and is only acked;
4. a lease that runs out (its claimer died before publishing, its message was lost with a
   NATS restart) is taken over by a sweeper (``RENEW_STALE``) and republished; once JetStream
   stored a claim's message its lease grows long (``MARK_QUEUED``): a backlog is not a loss.
   A handler that fails on every delivery ends as one dead letter (``DEAD_LETTER``).

Keys that belong to the running load test (registered, names starting with its key prefix)
carry the test's id through all of this, so that its records are kept key by key.
"""

from typing import Final

#: The least life of the claim record of a registered instance, whoever claimed it (a listener
#: or a sweeper): a copy of its expiry event heard this much later still finds it claimed.
LEAST_CLAIM_RECORD_MS: Final = 60_000

_PRELUDE: Final = (
    f"local least_record_ms = {LEAST_CLAIM_RECORD_MS}\n"
    + """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The running test: id, dedup window and key prefix. While a test is starting (clearing what
-- the last one left), keys with its prefix get the id '-', which matches no test: they are
-- leftovers of the last test, never counted into the new one.
local function running_test(current)
  local t = redis.call('HMGET', current, 'id', 'state', 'dedup_window', 'key_prefix')
  local state = t[2]
  if t[1] and (state == 'generating' or state == 'draining') then
    return t[1], tonumber(t[3]), t[4] or ''
  elseif t[1] and state == 'starting' then
    return '-', nil, t[4] or ''
  end
  return '', nil, ''
end
-- The last claim id handed out. A Redis that lost its data starts again from its clock (in
-- thousandths of a ms), above every id handed out before: message ids are claim ids, and
-- JetStream would drop a reused one as a duplicate.
local function last_claim_id(seq_key, now)
  local seq = redis.call('GET', seq_key)
  if seq then return tonumber(seq) end
  return now * 1000
end
local function id_string(number)
  return string.format('%.0f', number)
end
-- A lease member: claim id, deadline ('' when not registered), test id, key.
local function parse_lease(member)
  return string.match(member, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
end
-- The log-scale latency bucket of a delay (shared.latency.bucket_of).
local function bucket_of(delay_ms)
  if delay_ms < 1 then return 0 end
  return math.floor(math.log(delay_ms) / math.log(2) * 8) + 1
end
-- A key belongs to the running test when the test's generator registered it (it has a
-- deadline) and its name has the test's prefix; any other key is an application's.
local function of_test(key, prefix)
  return prefix ~= '' and string.sub(key, 1, #prefix) == prefix
end
local function test_of(key, registered, test_id, test_window, prefix, window)
  if registered and of_test(key, prefix) then
    return test_id, test_window or window
  end
  return '', window
end
"""
)

#: KEYS: test:current, expiry:due, expiry:leases, expiry:claim_seq, then per event its keys:
#:       for ``expired`` and ``due`` the key's dedup key, then (when read here) the key; for
#:       any other event (when read here) the key.
#: ARGV: lease ms, dedup window ms (outside a test), lookahead ms, then per event, in the order
#:       heard: the event (``expired``, ``due``, ``expire``, ``del``, ``persist``,
#:       ``rename_from``…), the key, and what the caller read of the key, or '' to read it here:
#:       for ``expired`` whether the key exists ('1'/'0'), for the others its ``PEXPIRETIME``.
#:       On a Redis Cluster the key lives in another slot than its group's state, so the caller
#:       reads it first.
#: An expiry is an *instance*: a key and the deadline it was armed with. Every event but
#: ``expired`` and ``due`` tells the registry a key's new deadline (``expire``: armed or
#: moved), that it has none any more (``persist``) or that it is gone (``del``,
#: ``rename_from``: cancelled). ``expired`` claims the instance that fired, at most once:
#: - a registered key is claimed if its registered deadline has passed, whatever claim record
#:   an earlier instance left (a re-armed key is a new timer), and even if the key was written
#:   again since it fired: the registration goes, and a claim record stays for the dedup
#:   window, for the same event heard by another listener;
#: - a registered key whose deadline lies ahead is not claimed: the event is an earlier
#:   instance's, heard late, or the key was deleted before its deadline;
#: - an unregistered key (its arming was not heard) is claimed if it no longer exists and no
#:   claim record guards it (``SET dedup:<key> NX PX <window>``).
#: ``due`` is the fleet's own word that a registered deadline has come (``consumer.timers``):
#: the instance is claimed exactly as its ``expired`` event would claim it, provided the key
#: is gone or at its deadline (a key that lives on was moved or persisted without the fleet
#: hearing it yet: the registry follows the key instead). An unregistered key is never
#: claimed by ``due``.
#: A registered instance's claim record lives at least ``LEAST_CLAIM_RECORD_MS``: the other
#: listener's copy of the event may come far later than the window in a burst, when its
#: listener is behind, and must still find the instance claimed. The next instance of the key
#: does not wait for it: its arming registers it, and a registered expiry ignores old records.
#: A claim gets an id and a lease in ``expiry:leases``.
#: Returns {the lease members won, the upcoming deadlines}: each registered deadline this
#: call saw ahead by at most the lookahead, as key and ms until it comes, by Redis's clock.
HEAR: Final = (
    _PRELUDE
    + """
local test_id, test_window, prefix = running_test(KEYS[1])
local now = now_ms()
local lease_end = now + tonumber(ARGV[1])
local default_window = tonumber(ARGV[2])
local lookahead = tonumber(ARGV[3])
local seq = last_claim_id(KEYS[4], now)
local first_seq = seq
local won = {}
local upcoming = {}
local function ahead(key, deadline)
  if deadline - now <= lookahead then
    upcoming[#upcoming + 1] = key
    upcoming[#upcoming + 1] = deadline - now
  end
end
local function claim(key, dedup, deadline, window, tid, guarded)
  if guarded then
    if not redis.call('SET', dedup, id_string(seq + 1), 'NX', 'PX', window) then return end
  else
    redis.call('ZREM', KEYS[2], key)
    redis.call('SET', dedup, id_string(seq + 1), 'PX', math.max(window, least_record_ms))
  end
  seq = seq + 1
  local member = id_string(seq) .. '|' .. deadline .. '|' .. tid .. '|' .. key
  redis.call('ZADD', KEYS[3], lease_end, member)
  won[#won + 1] = member
end
local at = 5
for i = 4, #ARGV, 3 do
  local event, key, seen = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if event == 'expired' or event == 'due' then
    local dedup, key_at = KEYS[at], at + 1
    at = at + (seen == '' and 2 or 1)
    local deadline = redis.call('ZSCORE', KEYS[2], key)
    local tid, window = test_of(key, deadline, test_id, test_window, prefix, default_window)
    if event == 'expired' then
      local exists = seen == '1'
      if seen == '' then exists = redis.call('EXISTS', KEYS[key_at]) == 1 end
      if deadline then
        if tonumber(deadline) <= now then claim(key, dedup, deadline, window, tid, false) end
      elseif not exists then
        claim(key, dedup, '', window, tid, true)
      end
    elseif deadline and tonumber(deadline) > now then
      ahead(key, tonumber(deadline))
    elseif deadline then
      local expires = tonumber(seen)
      if seen == '' then expires = redis.call('PEXPIRETIME', KEYS[key_at]) end
      if of_test(key, prefix) or expires == -2 or (expires >= 0 and expires <= now) then
        claim(key, dedup, deadline, window, tid, false)
      elseif expires > now then
        redis.call('ZADD', KEYS[2], expires, key)
        ahead(key, expires)
      else
        redis.call('ZREM', KEYS[2], key)
      end
    end
  else
    local expires = tonumber(seen)
    if seen == '' then
      at = at + 1
      -- The running load test's keys are its generator's: it registered each itself, and
      -- its verdict counts every key it wrote, whatever others do to them.
      expires = of_test(key, prefix) and 0 or redis.call('PEXPIRETIME', KEYS[at - 1])
    elseif of_test(key, prefix) then
      expires = 0
    end
    if expires > now then
      redis.call('ZADD', KEYS[2], expires, key)
      ahead(key, expires)
    elseif expires == -1 or (expires < 0 and event ~= 'expire') then
      redis.call('ZREM', KEYS[2], key)
    end
    -- A deadline read by the caller that has passed by now is left alone: the key may have
    -- expired and been claimed in between, and must not be registered again.
  end
end
if seq ~= first_seq then redis.call('SET', KEYS[4], id_string(seq)) end
return {won, upcoming}
"""
)

#: KEYS: expiry:due, expiry:leases. ARGV: grace ms, limit.
#: Returns {registered keys overdue by more than the grace, lease members whose lease ran out}.
#: Read only: ``SWEEP_CLAIM`` and ``RENEW_STALE`` check each again atomically.
SWEEP_SCAN: Final = (
    _PRELUDE
    + """
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]),
                       'LIMIT', 0, tonumber(ARGV[2]))
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
return {due, stale}
"""
)

#: KEYS: expiry:due. ARGV: ms back, ms ahead, limit.
#: Returns {key, ms until its deadline, ...} for the registered deadlines from the given ms
#: back to the given ms ahead of now, earliest first, by Redis's clock: the reader plans on
#: its own clock without comparing the two (``consumer.timers``). Read only.
UPCOMING: Final = (
    _PRELUDE
    + """
local now = now_ms()
local found = redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]),
                         now + tonumber(ARGV[2]), 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
for i = 2, #found, 2 do found[i] = tonumber(found[i]) - now end
return found
"""
)

#: KEYS: test:current, expiry:due, expiry:leases, expiry:claim_seq, metrics:recovered,
#:       test:recovered, then per key its dedup key and, when its TTL is read here, the key.
#: ARGV: lease ms, grace ms, dedup window ms (outside a test), then per key: the key and its
#: TTL as the caller read it (``PTTL``), or '' to read it here. On a Redis Cluster the key
#: lives in another slot than the group's state, so the caller reads its TTL first; the claim
#: is still safe, because a producer registers (moving the deadline) before it writes the key:
#: a deadline unchanged here means the key was not written again since the caller read its TTL.
#: Claims registered keys past their deadline (plus grace) whose expiry nobody claimed, and
#: those gone without a word the fleet heard (deleted while no consumer listened: the
#: registered deadline is the promise, so the safe side is to handle it). A key that lives on
#: without a TTL (``PERSIST``, ``SET`` without one) will never expire: its registration goes.
#: A key whose TTL was moved is given its new deadline. The running load test's keys are
#: claimed whatever others did to them (its verdict counts every key written). Returns the
#: lease members claimed, like HEAR.
SWEEP_CLAIM: Final = (
    _PRELUDE
    + """
local test_id, test_window, prefix = running_test(KEYS[1])
local now = now_ms()
local lease_end = now + tonumber(ARGV[1])
local cutoff = now - tonumber(ARGV[2])
local seq = last_claim_id(KEYS[4], now)
local first_seq = seq
local claimed = {}
local at = 7
for i = 4, #ARGV, 2 do
  local key, seen_ttl = ARGV[i], ARGV[i + 1]
  local dedup = KEYS[at]
  local ttl
  if seen_ttl == '' then
    ttl = redis.call('PTTL', KEYS[at + 1])
    at = at + 2
  else
    ttl = tonumber(seen_ttl)
    at = at + 1
  end
  local deadline = redis.call('ZSCORE', KEYS[2], key)
  if deadline and tonumber(deadline) <= cutoff then
    if ttl == -1 and not of_test(key, prefix) then
      -- Made persistent (or written again without a TTL): it will never expire.
      redis.call('ZREM', KEYS[2], key)
    elseif ttl < 0 then
      local tid, window = test_of(key, true, test_id, test_window, prefix, tonumber(ARGV[3]))
      seq = seq + 1
      -- Its expiry event may still be on its way (listeners far behind): keep the record
      -- long enough that it finds the key claimed.
      redis.call('SET', dedup, id_string(seq), 'PX', math.max(window, least_record_ms))
      redis.call('ZREM', KEYS[2], key)
      local member = id_string(seq) .. '|' .. deadline .. '|' .. tid .. '|' .. key
      redis.call('ZADD', KEYS[3], lease_end, member)
      if tid ~= '' and tid ~= '-' then redis.call('SADD', KEYS[6], key) end
      claimed[#claimed + 1] = member
    else
      redis.call('ZADD', KEYS[2], now + ttl, key)
    end
  end
end
if seq ~= first_seq then redis.call('SET', KEYS[4], id_string(seq)) end
if #claimed > 0 then redis.call('INCRBY', KEYS[5], #claimed) end
return claimed
"""
)

#: KEYS: expiry:leases, metrics:recovered, test:current, test:recovered.
#: ARGV: lease ms, then lease members.
#: Takes over the leases among ``members`` that have run out. Returns {now ms, member...}: the
#: time tells the republished messages from the first ones.
RENEW_STALE: Final = (
    _PRELUDE
    + """
local now = now_ms()
local current = redis.call('HGET', KEYS[3], 'id') or ''
local taken = {tostring(now)}
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= now then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
    taken[#taken + 1] = ARGV[i]
    local _, _, tid, key = parse_lease(ARGV[i])
    if tid ~= '' and tid == current then redis.call('SADD', KEYS[4], key) end
  end
end
if #taken > 1 then redis.call('INCRBY', KEYS[2], #taken - 1) end
return taken
"""
)

#: KEYS: expiry:leases. ARGV: queued lease ms, then members.
#: JetStream stored these claims' messages: from now on JetStream delivers them (and delivers
#: them again if a worker dies), so their leases grow to the queued lease, which only covers a
#: message lost without NATS saying so. A backlog in the queue must not make them look lost.
MARK_QUEUED: Final = (
    _PRELUDE
    + """
local queued_until = now_ms() + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', 'GT', queued_until, ARGV[i]) end
return #ARGV - 1
"""
)

#: KEYS: expiry:leases. ARGV: member... — ends the leases of claims a publisher could not
#: publish, so that any consumer's sweeper takes them over at once.
RELEASE: Final = """
for i = 1, #ARGV do redis.call('ZADD', KEYS[1], 'XX', 0, ARGV[i]) end
return #ARGV
"""

#: KEYS: expiry:leases. Ends every lease (after a NATS restart lost the queued messages).
RELEASE_ALL: Final = """
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, member in ipairs(members) do redis.call('ZADD', KEYS[1], 0, member) end
return #members
"""

#: KEYS: test:current, expiry:leases, metrics:duplicates.
#: ARGV: lease ms, then the lease member of each message.
#: Before a handler runs: 1 = the lease is held (and extended: the handler has at least the
#: whole lease), 0 = no lease (the claim was handled already: a second delivery), 2 = the claim
#: belongs to an earlier test (its lease is dropped, its handler never runs).
BEGIN: Final = (
    _PRELUDE
    + """
local current = redis.call('HGET', KEYS[1], 'id') or ''
local lease_end = now_ms() + tonumber(ARGV[1])
local states = {}
local duplicates = 0
for i = 2, #ARGV do
  local member = ARGV[i]
  local _, _, tid = parse_lease(member)
  if not redis.call('ZSCORE', KEYS[2], member) then
    states[#states + 1] = 0
    duplicates = duplicates + 1
  elseif tid ~= '' and tid ~= current then
    redis.call('ZREM', KEYS[2], member)
    states[#states + 1] = 2
  else
    redis.call('ZADD', KEYS[2], 'XX', 'GT', lease_end, member)
    states[#states + 1] = 1
  end
end
if duplicates > 0 then redis.call('INCRBY', KEYS[3], duplicates) end
return states
"""
)

#: KEYS: test:current, expiry:leases, metrics:consumed, metrics:consumer:<id>,
#:       metrics:consumers, metrics:duplicates, test:consumed, test:latency, test:counted.
#: ARGV: consumer id, then the lease member of each message whose handler returned.
#: The first completion of a claim removes its lease and counts it; any later one only counts
#: as a duplicate. Keys of the current test also get their record in test:consumed (consumer
#: and delay from the deadline, by Redis's clock) and their latency bucket; a second record of
#: one key is impossible (a key claimed twice shows as counted > unique).
#: Returns {counted, duplicates, stale}.
COMPLETE: Final = (
    _PRELUDE
    + """
local current = redis.call('HGET', KEYS[1], 'id') or ''
local consumer = ARGV[1]
local now = now_ms()
local counted, duplicates, stale, test_counted = 0, 0, 0, 0
for i = 2, #ARGV do
  local _, deadline, tid, key = parse_lease(ARGV[i])
  if redis.call('ZREM', KEYS[2], ARGV[i]) == 0 then
    duplicates = duplicates + 1
  elseif tid ~= '' and tid ~= current then
    stale = stale + 1
  else
    counted = counted + 1
    if tid ~= '' then
      test_counted = test_counted + 1
      local delay = deadline ~= '' and math.max(0, now - tonumber(deadline)) or nil
      local record = consumer .. ' ' .. (delay and string.format('%d', delay) or '')
      if redis.call('HSETNX', KEYS[7], key, record) == 1 and delay then
        redis.call('HINCRBY', KEYS[8], bucket_of(delay), 1)
      end
    end
  end
end
if counted > 0 then
  redis.call('INCRBY', KEYS[3], counted)
  redis.call('INCRBY', KEYS[4], counted)
  redis.call('SADD', KEYS[5], consumer)
end
if duplicates > 0 then redis.call('INCRBY', KEYS[6], duplicates) end
if test_counted > 0 then redis.call('INCRBY', KEYS[9], test_counted) end
return {counted, duplicates, stale}
"""
)

#: KEYS: test:current, expiry:leases, expiry:dead_letters, metrics:dead_letters,
#:       test:dead_letters.
#: ARGV: records kept, then (member, key, test id, JSON record) per message given up on.
#: A claim is a dead letter once: a message whose lease is already gone (another delivery
#: completed it) is not one. A malformed message (member '') always is.
#: Returns how many dead letters were recorded.
DEAD_LETTER: Final = """
local current = redis.call('HGET', KEYS[1], 'id') or ''
local recorded = 0
for i = 2, #ARGV, 4 do
  local member, key, tid = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if member == '' or redis.call('ZREM', KEYS[2], member) == 1 then
    recorded = recorded + 1
    redis.call('LPUSH', KEYS[3], ARGV[i + 3])
    if tid ~= '' and tid == current then redis.call('SADD', KEYS[5], key) end
  end
end
if recorded > 0 then
  redis.call('INCRBY', KEYS[4], recorded)
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[1]) - 1)
end
return recorded
"""

#: KEYS: the fleet's listener slots, then its listeners-held hash. ARGV: consumer id, lease ms.
#: Renews the slot the caller holds, or takes a free one; never two. Returns the slot's index,
#: or -1 when every slot is held by others. The hash (who listens, until when) is kept for the
#: status, without the holders whose lease ran out.
HOLD_SLOT: Final = (
    _PRELUDE
    + """
local now = now_ms()
local me, lease = ARGV[1], tonumber(ARGV[2])
local held = KEYS[#KEYS]
local mine = -1
for i = 1, #KEYS - 1 do
  if redis.call('GET', KEYS[i]) == me then
    if mine < 0 then
      redis.call('PEXPIRE', KEYS[i], lease)
      mine = i - 1
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
if mine < 0 then
  for i = 1, #KEYS - 1 do
    if redis.call('SET', KEYS[i], me, 'NX', 'PX', lease) then
      mine = i - 1
      break
    end
  end
end
if mine >= 0 then
  redis.call('HSET', held, me, now + lease)
else
  redis.call('HDEL', held, me)
end
local all = redis.call('HGETALL', held)
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) < now then redis.call('HDEL', held, all[i]) end
end
return mine
"""
)

#: KEYS: the fleet's listener slots, then its listeners-held hash. ARGV: consumer id.
#: Gives back the caller's slot at once (a consumer stopping), for another to take.
RELEASE_SLOT: Final = """
for i = 1, #KEYS - 1 do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
redis.call('HDEL', KEYS[#KEYS], ARGV[1])
return 1
"""

#: Bumped whenever the library's code changes; consumers replace an older library at start-up.
FUNCTION_LIBRARY_VERSION: Final = 4

#: The library producers call (Redis >= 7): ``FCALL expiry_register 2 <key> expiry:due <value>
#: <ttl_ms>`` writes the key with its TTL and registers its deadline, atomically;
#: ``FCALL expiry_register_many <n+1> <key>... expiry:due <ttl_ms> <value>...`` does n at once.
#: Both return the deadline (unix ms, Redis's clock). On a Redis Cluster the key and the registry
#: live in different slots, so a producer registers first and then writes the key itself:
#: ``FCALL expiry_register_due 1 expiry:{xp:…}:due <ttl_ms> <key>...`` (the registry of the
#: keys' slot group, ``shared.names.KeyLayout``), then ``SET <key> <value> PX <ttl_ms>``.
#: ``FCALL expiry_cancel 2 <key> expiry:due`` deletes a key that has not expired and its
#: registration: 1 = cancelled before it fired (it will never be handled), 0 = too late (it
#: fired: it is handled exactly once, or there was no such key). ``FCALL expiry_reschedule 2
#: <key> expiry:due <ttl_ms>`` moves a live key's deadline and its registration: the new
#: deadline, or 0 when the key is gone (it fired: nothing moved). On a cluster both are two
#: steps (``shared.registration``): the key first, then its registration.
FUNCTION_LIBRARY: Final = (
    f"""#!lua name=expiry_pipeline
local VERSION = {FUNCTION_LIBRARY_VERSION}
"""
    + """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- expiry:due on one server; expiry:{xp:<group>:<n>}:due, a slot group's, on a cluster.
local function check_registry(name)
  if name ~= 'expiry:due' and not string.match(name, '^expiry:{xp:%d+:%d+}:due$') then
    return 'the registry key must be expiry:due (on a cluster expiry:{xp:…}:due), got ' .. name
  end
end

local function check_key(name)
  if name == '' or string.sub(name, 1, 6) == 'dedup:' or string.sub(name, 1, 7) == 'expiry:' then
    return 'cannot register ' .. name .. ': dedup: and expiry: keys belong to the pipeline'
  end
end

-- The first problem with a registry and the key names names[first..last], or nil.
local function check_request(registry, names, first, last)
  local problem = check_registry(registry)
  if problem then return problem end
  for i = first, last do
    problem = check_key(names[i])
    if problem then return problem end
  end
end

local function ttl_of(value)
  local ttl = tonumber(value)
  if not ttl or ttl < 1 or ttl ~= math.floor(ttl) then
    return nil, 'ttl_ms must be a positive whole number of milliseconds, got ' .. tostring(value)
  end
  return ttl
end

-- FCALL expiry_register 2 <key> expiry:due <value> <ttl_ms>
local function register(keys, args)
  if #keys ~= 2 or #args ~= 2 then
    return redis.error_reply('ERR usage: FCALL expiry_register 2 <key> expiry:due <value> <ttl_ms>')
  end
  local problem = check_registry(keys[2]) or check_key(keys[1])
  if problem then return redis.error_reply('ERR ' .. problem) end
  local ttl, bad = ttl_of(args[2])
  if not ttl then return redis.error_reply('ERR ' .. bad) end
  local deadline = now_ms() + ttl
  redis.call('ZADD', keys[2], deadline, keys[1])
  -- PXAT: the key's own deadline is the registered one to the millisecond (with PX Redis
  -- counts from its cached time, which can differ by one).
  redis.call('SET', keys[1], args[1], 'PXAT', deadline)
  return deadline
end

-- FCALL expiry_register_many <n+1> <key1> ... <keyn> expiry:due <ttl_ms> <value1> ... <valuen>
local function register_many(keys, args)
  local n = #keys - 1
  if n < 1 or #args ~= n + 1 then
    return redis.error_reply('ERR usage: FCALL expiry_register_many <n+1> <key1> ... <keyn> '
      .. 'expiry:due <ttl_ms> <value1> ... <valuen>')
  end
  local registry = keys[#keys]
  local problem = check_request(registry, keys, 1, n)
  if problem then return redis.error_reply('ERR ' .. problem) end
  local ttl, bad = ttl_of(args[1])
  if not ttl then return redis.error_reply('ERR ' .. bad) end
  local deadline = now_ms() + ttl
  for i = 1, n do
    redis.call('ZADD', registry, deadline, keys[i])
    redis.call('SET', keys[i], args[i + 1], 'PXAT', deadline)
  end
  return deadline
end

-- FCALL expiry_register_due 1 <registry> <ttl_ms> <key1> ... <keyn>: registration alone, for a
-- Redis Cluster, where the producer writes the keys after this returns.
local function register_due(keys, args)
  if #keys ~= 1 or #args < 2 then
    return redis.error_reply('ERR usage: FCALL expiry_register_due 1 <registry> <ttl_ms> '
      .. '<key1> ... <keyn>')
  end
  local problem = check_request(keys[1], args, 2, #args)
  if problem then return redis.error_reply('ERR ' .. problem) end
  local ttl, bad = ttl_of(args[1])
  if not ttl then return redis.error_reply('ERR ' .. bad) end
  local deadline = now_ms() + ttl
  for i = 2, #args do redis.call('ZADD', keys[1], deadline, args[i]) end
  return deadline
end

-- FCALL expiry_cancel 2 <key> expiry:due
local function cancel(keys, args)
  if #keys ~= 2 or #args ~= 0 then
    return redis.error_reply('ERR usage: FCALL expiry_cancel 2 <key> expiry:due')
  end
  local problem = check_registry(keys[2]) or check_key(keys[1])
  if problem then return redis.error_reply('ERR ' .. problem) end
  -- A key past its TTL is deleted by this very read, its expiry announced: too late.
  if redis.call('EXISTS', keys[1]) == 0 then return 0 end
  redis.call('DEL', keys[1])
  redis.call('ZREM', keys[2], keys[1])
  return 1
end

-- FCALL expiry_reschedule 2 <key> expiry:due <ttl_ms>
local function reschedule(keys, args)
  if #keys ~= 2 or #args ~= 1 then
    return redis.error_reply('ERR usage: FCALL expiry_reschedule 2 <key> expiry:due <ttl_ms>')
  end
  local problem = check_registry(keys[2]) or check_key(keys[1])
  if problem then return redis.error_reply('ERR ' .. problem) end
  local ttl, bad = ttl_of(args[1])
  if not ttl then return redis.error_reply('ERR ' .. bad) end
  if redis.call('PEXPIRE', keys[1], ttl) == 0 then return 0 end
  local deadline = redis.call('PEXPIRETIME', keys[1])
  redis.call('ZADD', keys[2], deadline, keys[1])
  return deadline
end

redis.register_function('expiry_register', register)
redis.register_function('expiry_cancel', cancel)
redis.register_function('expiry_reschedule', reschedule)
redis.register_function('expiry_register_due', register_due)
redis.register_function('expiry_register_many', register_many)
redis.register_function{
  function_name = 'expiry_library_version',
  callback = function() return VERSION end,
  flags = {'no-writes'},
}
"""
)
