//! The Lua the shared store runs: each script is one round trip, atomic
//! on Redis, so daemons never interleave a read and a write of one key.

/// The shared GCRA: `KEYS` = n bucket keys then their n pause keys;
/// `ARGV` = now in µs (`""`: Redis's own clock), cost, reserve, then per
/// bucket its interval in µs, its burst and a resume flag. Returns
/// `{0, 0}` (spent), `{1, wait µs}` (not enough tokens) or `{2, pause µs}`
/// (paused after a 429). Arithmetic in whole microseconds, below 2^53, so
/// Lua's doubles are exact; written back with `%.0f` for the same reason.
pub const GCRA_LUA: &str = r"
local n = #KEYS / 2
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local cost = tonumber(ARGV[2])
local reserve = tonumber(ARGV[3])
local paused = 0
for i = 1, n do
  local p = redis.call('PTTL', KEYS[n + i])
  if p > paused then paused = p end
end
local wait = 0
local tats = {}
for i = 1, n do
  local interval = tonumber(ARGV[1 + 3 * i])
  local burst = tonumber(ARGV[2 + 3 * i])
  local tolerance = interval * burst
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if ARGV[3 + 3 * i] == '1' and tat < now + tolerance then
    tat = now + tolerance
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.floor(tolerance / 1000) + 1000)
  end
  local start = math.max(tat, now)
  local need = math.min(cost + reserve, burst)
  local reach = start + interval * need
  if reach > now + tolerance then
    wait = math.max(wait, reach - now - tolerance)
  end
  tats[i] = start + interval * cost
end
if paused > 0 then return {2, paused * 1000} end
if wait > 0 then return {1, wait} end
for i = 1, n do
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', math.floor((tats[i] - now) / 1000) + 1000)
end
return {0, 0}
";

/// Pauses every bucket in `KEYS` for `ARGV[1]` ms, never shortening a
/// longer pause.
pub(super) const PAUSE_LUA: &str = r"
for i = 1, #KEYS do
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[1]) then
    redis.call('SET', KEYS[i], '1', 'PX', ARGV[1])
  end
end
return 0
";

/// A local miss: the shared answer `KEYS[1]` with its TTL left (`{1,
/// value, pttl}`), else the lease `KEYS[2]` taken for `ARGV[1]` for
/// `ARGV[2]` ms (`{2, '', 0}`: fetch it) or held by another (`{3, '', 0}`).
pub(super) const LOOKUP_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return {1, v, redis.call('PTTL', KEYS[1])} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, '', 0} end
return {3, '', 0}
";

/// Deletes lease `KEYS[1]` if daemon `ARGV[1]` still holds it.
pub(super) const RELEASE_LUA: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 0";

/// Records daemon `ARGV[1]` alive in the sorted set `KEYS[1]` on Redis's
/// clock, forgets daemons silent for `ARGV[2]` ms; publishes its
/// fingerprint `ARGV[3]` in the hash `KEYS[2]` (one per cluster name, all
/// upstreams: `<ms> <fingerprint>` by daemon id) and forgets silent ones
/// there too. Returns how many are alive and the fingerprints of the
/// others, `id`, `fingerprint` in turn.
pub(super) const HEARTBEAT_LUA: &str = r"
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms - window)
redis.call('PEXPIRE', KEYS[1], window)
redis.call('HSET', KEYS[2], ARGV[1], ms .. ' ' .. ARGV[3])
redis.call('PEXPIRE', KEYS[2], window)
local peers = {}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local seen, fp = string.match(all[i + 1], '^(%d+) (.*)$')
  if seen == nil or tonumber(seen) < ms - window then
    redis.call('HDEL', KEYS[2], all[i])
  elseif all[i] ~= ARGV[1] then
    peers[#peers + 1] = all[i]
    peers[#peers + 1] = fp
  end
end
return {redis.call('ZCARD', KEYS[1]), peers}
";
