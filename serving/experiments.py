"""Holdout experiments: exposures and conversions in Redis, uplift with 95% CIs.

Keys (the ``{experiment}`` hash tag keeps one experiment on one Redis Cluster slot):

* ``seg:exp:{id}:exposed:<arm>`` — set of exposed users; ``seg:exp:{id}:converted:<arm>``
* ``seg:exp:{id}:segment`` — user -> segment id at first exposure
* ``seg:exp:{id}:stats`` — counters ``exposed:<arm>[:<segment>]``,
  ``converted:<arm>[:<segment>]``, ``value:<arm>[:<segment>]``, ``unexposed``

Both writes are Lua scripts, so a user is counted once however often the CMS calls.
Rates are converted users / exposed users per arm; uplift = treatment - control with
a Wald 95% interval, relative uplift with the delta method on log(rate ratio).
"""

from __future__ import annotations

import functools
import math
from typing import Any

from segstream.adapters.redis_keys import experiment_key

Z95 = 1.959963984540054

EXPOSE_LUA = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  redis.call('HINCRBY', KEYS[3], 'exposed:' .. ARGV[2], 1)
  redis.call('HINCRBY', KEYS[3], 'exposed:' .. ARGV[2] .. ':' .. ARGV[3], 1)
  return 1
end
return 0
"""

CONVERT_LUA = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  redis.call('HINCRBY', KEYS[3], 'unexposed', 1)
  return 0
end
local seg = redis.call('HGET', KEYS[2], ARGV[1]) or 'unknown'
redis.call('HINCRBYFLOAT', KEYS[3], 'value:' .. ARGV[2], ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[3], 'value:' .. ARGV[2] .. ':' .. seg, ARGV[3])
if redis.call('SADD', KEYS[4], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[3], 'converted:' .. ARGV[2], 1)
  redis.call('HINCRBY', KEYS[3], 'converted:' .. ARGV[2] .. ':' .. seg, 1)
end
return 1
"""

def expose_command(exp: str, user: str, arm: str, segment: int) -> tuple[Any, ...]:
    key = functools.partial(experiment_key, exp)
    return ("EVAL", EXPOSE_LUA, 3, key(f"exposed:{arm}"), key("segment"), key("stats"),
            user, arm, str(segment))


def convert_command(exp: str, user: str, arm: str, value: float) -> tuple[Any, ...]:
    key = functools.partial(experiment_key, exp)
    return ("EVAL", CONVERT_LUA, 4, key(f"exposed:{arm}"), key("segment"), key("stats"),
            key(f"converted:{arm}"), user, arm, repr(float(value)))


def stats_command(exp: str) -> tuple[Any, ...]:
    return ("HGETALL", experiment_key(exp, "stats"))


def parse_stats(flat: list[bytes]) -> dict[str, float]:
    return {flat[i].decode(): float(flat[i + 1]) for i in range(0, len(flat), 2)}


def arm_stats(stats: dict[str, float], arm: str, segment: str | None) -> dict[str, Any]:
    sfx = "" if segment is None else f":{segment}"
    n = int(stats.get(f"exposed:{arm}{sfx}", 0))
    x = int(stats.get(f"converted:{arm}{sfx}", 0))
    return {"exposed": n, "converted": x, "rate": x / n if n else None,
            "value": stats.get(f"value:{arm}{sfx}", 0.0)}


def uplift(nt: int, xt: int, nc: int, xc: int) -> dict[str, Any]:
    """Absolute and relative uplift of treatment over control with 95% intervals.

    >>> u = uplift(1000, 120, 1000, 100)
    >>> round(u["absolute"], 3), [round(v, 4) for v in u["absolute_ci95"]]
    (0.02, [-0.0074, 0.0474])
    """
    out: dict[str, Any] = {"absolute": None, "absolute_ci95": None, "relative": None,
                           "relative_ci95": None}
    if not nt or not nc:
        return out
    pt, pc = xt / nt, xc / nc
    diff = pt - pc
    se = math.sqrt(pt * (1 - pt) / nt + pc * (1 - pc) / nc)
    out["absolute"] = diff
    out["absolute_ci95"] = (diff - Z95 * se, diff + Z95 * se)
    if pc > 0:
        out["relative"] = diff / pc
        if pt > 0:
            se_log = math.sqrt((1 - pt) / (nt * pt) + (1 - pc) / (nc * pc))
            log_ratio = math.log(pt / pc)
            out["relative_ci95"] = (math.exp(log_ratio - Z95 * se_log) - 1,
                                    math.exp(log_ratio + Z95 * se_log) - 1)
    return out


def report(exp: str, stats: dict[str, float]) -> dict[str, Any]:
    def group(segment: str | None) -> dict[str, Any]:
        t, c = arm_stats(stats, "treatment", segment), arm_stats(stats, "control", segment)
        return {"treatment": t, "control": c,
                "uplift": uplift(t["exposed"], t["converted"], c["exposed"], c["converted"])}

    segments = sorted({k.split(":", 2)[2] for k in stats
                       if k.startswith("exposed:") and k.count(":") == 2})
    return {"experiment_id": exp, "overall": group(None),
            "segments": {s: group(s) for s in segments}}
