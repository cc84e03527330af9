'use strict';

// Reads the index.json of an Autobahn-format report (as kosoku writes it) and
// counts its verdicts.
//   node conformance/summary.js target/conformance/server

const fs = require('node:fs');
const path = require('node:path');

const VERDICTS = ['OK', 'NON-STRICT', 'INFORMATIONAL', 'UNIMPLEMENTED', 'FAILED', 'ERROR', 'HARNESS-BUG'];
// A known kosoku bug: in the compression cases, an echo sent uncompressed
// (which RFC 7692 allows, and which we do when deflate would not make a
// message smaller) makes the case hash a string and end as an ERROR. Such
// cases count as HARNESS-BUG, not against us.
const HARNESS_BUG = 'Strings must be encoded before hashing';
// Closing-handshake verdicts that are not a failure.
const CLOSE_OK = new Set(['OK', 'INFORMATIONAL']);

const byId = (a, b) => {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? -1) !== (y[i] ?? -1)) return (x[i] ?? -1) - (y[i] ?? -1);
  }
  return 0;
};

/**
 * `{ counts, closeNotOk, total, bad, agents }` of the report in `dir`, or
 * null without one. `counts` has every verdict of VERDICTS (anything else
 * kosoku writes counts as ERROR); `bad` lists the cases that FAILED, are an
 * ERROR, or whose closing handshake was not OK.
 */
function summarize(dir) {
  let index;
  try {
    index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8'));
  } catch {
    return null;
  }
  const counts = Object.fromEntries(VERDICTS.map((v) => [v, 0]));
  const bad = [];
  let closeNotOk = 0;
  for (const cases of Object.values(index)) {
    for (const id of Object.keys(cases).sort(byId)) {
      const { behavior, behaviorClose, remoteCloseCode, reportfile } = cases[id];
      const verdict = VERDICTS.includes(behavior) ? behavior : 'ERROR';
      if (verdict === 'ERROR' && harnessBug(dir, reportfile)) {
        counts['HARNESS-BUG']++;
        continue;
      }
      counts[verdict]++;
      if (!CLOSE_OK.has(behaviorClose)) closeNotOk++;
      if (verdict === 'FAILED' || verdict === 'ERROR' || !CLOSE_OK.has(behaviorClose)) {
        bad.push({ id, behavior, behaviorClose, remoteCloseCode });
      }
    }
  }
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  return { counts, closeNotOk, total, bad, agents: Object.keys(index) };
}

function harnessBug(dir, reportfile) {
  try {
    const report = JSON.parse(fs.readFileSync(path.join(dir, reportfile), 'utf8'));
    return String(report.result).includes(HARNESS_BUG);
  } catch {
    return false;
  }
}

/** One line: `OK=.. NON-STRICT=.. ... TOTAL=..`. */
function line(s) {
  return `${VERDICTS.map((v) => `${v}=${s.counts[v]}`).join(' ')} CLOSE-NOT-OK=${s.closeNotOk} TOTAL=${s.total}`;
}

module.exports = { summarize, line };

if (require.main === module) {
  const s = summarize(process.argv[2] || '.');
  if (!s) {
    console.error(`no index.json in ${process.argv[2]}`);
    process.exit(2);
  }
  for (const b of s.bad) console.log(`  ${b.id}: ${b.behavior}, close ${b.behaviorClose}, code ${b.remoteCloseCode}`);
  console.log(line(s));
}
