'use strict';

// Medians, ratios, the printed table, bench/results.md and the SVG chart.

function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

function fmt(value, digits = 0) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '-';
  if (digits === 0) return Math.round(value).toLocaleString('en-US');
  return value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits
  });
}

function ratio(a, b) {
  if (a === null || b === null || !b) return null;
  return a / b;
}

function fmtRatio(r) {
  return r === null ? '-' : `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}x`;
}

/**
 * One table per scenario: rows are peers, columns the scenario's metrics
 * (medians over the rounds) and the ratios of its headline metrics to each
 * baseline.
 *
 * @param {Object} scenario `{ id, title, metrics, ratios, baselines }`
 * @param {Object} data `{ peers: [...], runs: { peer: [result...] }, errors }`
 */
function scenarioTable(scenario, data) {
  const med = {};
  for (const peer of data.peers) {
    med[peer] = {};
    for (const m of scenario.metrics) {
      med[peer][m.key] = median((data.runs[peer] || []).map((r) => r[m.key]));
    }
  }
  const header = ['peer', ...scenario.metrics.map((m) => m.label)];
  const ratioCols = [];
  for (const key of scenario.ratios) {
    const metric = scenario.metrics.find((m) => m.key === key);
    for (const base of scenario.baselines) {
      if (!data.peers.includes(base)) continue;
      ratioCols.push({ key, base, metric });
      header.push(`${metric.short || metric.label} vs ${base}`);
    }
  }
  header.push('rounds');
  const rows = data.peers.map((peer) => {
    const row = [peer];
    for (const m of scenario.metrics) row.push(fmt(med[peer][m.key], m.digits ?? 0));
    for (const col of ratioCols) {
      row.push(fmtRatio(ratio(med[peer][col.key], med[col.base][col.key])));
    }
    const n = (data.runs[peer] || []).length;
    const failed = (data.errors[peer] || []).length;
    row.push(failed ? `${n} (+${failed} failed)` : String(n));
    return row;
  });
  return { header, rows, med };
}

function textTable(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) =>
    cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function markdownTable(header, rows) {
  const esc = (c) => String(c).replace(/\|/g, '\\|');
  return [
    `| ${header.map(esc).join(' | ')} |`,
    `| ${header.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)
  ].join('\n');
}

const COLORS = {
  ours: '#d9480f',
  ws: '#868e96',
  'ws+bufferutil': '#495057',
  'uWS.js': '#1c7ed6',
  undici: '#2f9e44',
  'rust-echo': '#f08c00'
};
const FALLBACK = ['#ae3ec9', '#f59f00', '#0ca678', '#5c7cfa'];

function escapeXml(s) {
  return String(s).replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]);
}

/**
 * A grouped bar chart of "times better than the baseline" on a log2 axis:
 * for throughput metrics value / baseline, for costs baseline / value.
 *
 * @param {Object[]} groups `{ label, baseline, bars: [{ peer, factor, raw }] }`
 */
function svgChart(groups, { title, subtitle }) {
  const peers = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.peer)))];
  const color = (peer, i) => COLORS[peer] || FALLBACK[i % FALLBACK.length];
  const factors = groups.flatMap((g) => g.bars.map((b) => b.factor)).filter((f) => f > 0);
  const lo = Math.min(-2, Math.floor(Math.log2(Math.min(...factors, 1))));
  const hi = Math.max(2, Math.ceil(Math.log2(Math.max(...factors, 1))));
  const barW = 22;
  const gap = 34;
  const left = 70;
  const top = 96;
  const plotH = 300;
  const groupWidths = groups.map((g) => g.bars.length * barW);
  const width = Math.max(720, left + groupWidths.reduce((a, w) => a + w + gap, gap) + 20);
  const height = top + plotH + 60;
  const y = (f) => top + plotH - ((Math.log2(f) - lo) / (hi - lo)) * plotH;
  const out = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`
  );
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${left}" y="26" font-size="17" font-weight="bold">${escapeXml(title)}</text>`);
  // The subtitle, wrapped at about the chart's width.
  const perLine = Math.floor((width - left - 10) / 6.2);
  const words = subtitle.split(' ');
  const sublines = [''];
  for (const word of words) {
    const cur = sublines[sublines.length - 1];
    if (cur && cur.length + word.length + 1 > perLine) sublines.push(word);
    else sublines[sublines.length - 1] = cur ? `${cur} ${word}` : word;
  }
  sublines.forEach((l, i) => {
    out.push(`<text x="${left}" y="${44 + i * 15}" font-size="12" fill="#495057">${escapeXml(l)}</text>`);
  });
  const legendY = 56 + (sublines.length - 1) * 15;
  // Legend.
  let lx = left;
  peers.forEach((peer, i) => {
    out.push(`<rect x="${lx}" y="${legendY}" width="12" height="12" fill="${color(peer, i)}"/>`);
    out.push(`<text x="${lx + 16}" y="${legendY + 10}" font-size="12">${escapeXml(peer)}</text>`);
    lx += 30 + peer.length * 7;
  });
  // Grid: powers of two.
  for (let e = lo; e <= hi; e++) {
    const f = 2 ** e;
    const gy = y(f);
    out.push(
      `<line x1="${left}" x2="${width - 10}" y1="${gy}" y2="${gy}" stroke="${e === 0 ? '#212529' : '#dee2e6'}" stroke-width="${e === 0 ? 1.5 : 1}"/>`
    );
    const label = f >= 1 ? `${f}x` : `1/${1 / f}x`;
    out.push(`<text x="${left - 8}" y="${gy + 4}" font-size="11" text-anchor="end" fill="#495057">${label}</text>`);
  }
  let gx = left + gap;
  groups.forEach((g, gi) => {
    g.bars.forEach((b, bi) => {
      const x = gx + bi * barW;
      const peerIndex = peers.indexOf(b.peer);
      if (!(b.factor > 0)) return;
      const y0 = y(1);
      const y1 = y(b.factor);
      const yTop = Math.min(y0, y1);
      const h = Math.max(1, Math.abs(y1 - y0));
      out.push(
        `<rect x="${x + 2}" y="${yTop}" width="${barW - 4}" height="${h}" fill="${color(b.peer, peerIndex)}"><title>${escapeXml(`${b.peer}: ${b.raw} (${b.factor.toFixed(2)}x ${g.baseline})`)}</title></rect>`
      );
      const ty = b.factor >= 1 ? yTop - 4 : yTop + h + 11;
      out.push(
        `<text x="${x + barW / 2}" y="${ty}" font-size="9" text-anchor="middle" fill="#212529">${b.factor >= 10 ? b.factor.toFixed(0) : b.factor.toFixed(1)}</text>`
      );
    });
    const cx = gx + groupWidths[gi] / 2;
    const lines = g.label.split('\n');
    lines.forEach((l, li) => {
      out.push(
        `<text x="${cx}" y="${top + plotH + 20 + li * 14}" font-size="11" text-anchor="middle">${escapeXml(l)}</text>`
      );
    });
    gx += groupWidths[gi] + gap;
  });
  out.push('</svg>');
  return out.join('\n');
}

module.exports = { median, fmt, fmtRatio, ratio, scenarioTable, textTable, markdownTable, svgChart };
