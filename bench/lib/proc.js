'use strict';

// CPU time and memory of a process, read from /proc.

const fs = require('node:fs');

const MS_PER_TICK = 10; // USER_HZ is 100 on Linux

/**
 * CPU time of `pid`: `ns` summed from every thread's schedstat (time on
 * CPU, user and system, in nanoseconds), and the user/system split from
 * /proc/PID/stat in milliseconds (10 ms resolution).
 */
function cpu(pid) {
  const out = { ns: 0, userMs: 0, sysMs: 0 };
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.userMs = Number(fields[11]) * MS_PER_TICK;
    out.sysMs = Number(fields[12]) * MS_PER_TICK;
  } catch {
    return null;
  }
  let ns = 0;
  let found = false;
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        const text = fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8');
        ns += Number(text.split(' ')[0]);
        found = true;
      } catch {}
    }
  } catch {}
  out.ns = found ? ns : (out.userMs + out.sysMs) * 1e6;
  return out;
}

function cpuDelta(before, after) {
  if (!before || !after) return null;
  return {
    ns: after.ns - before.ns,
    userMs: after.userMs - before.userMs,
    sysMs: after.sysMs - before.sysMs
  };
}

/** Resident set size of `pid` in bytes (VmRSS), or null. */
function rss(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Busy time of the whole machine, all cores, in ms (/proc/stat: user, nice,
 * system, irq, softirq, steal).
 */
function machineBusyMs() {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) * MS_PER_TICK;
  } catch {
    return 0;
  }
}

module.exports = { cpu, cpuDelta, rss, machineBusyMs };
