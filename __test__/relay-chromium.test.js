'use strict';

// The relay's demo page end to end: the relay CLI as a child process, two
// pages in headless Chromium (Debian's `chromium`, driven by
// playwright-core), one phone-sized and one desktop-sized. Without
// /usr/bin/chromium these tests are skipped, saying so. The screenshots
// they take are kept, in a temp directory whose path is printed, when a
// test failed or KEEP_SCREENSHOTS=1 is set; otherwise it is removed.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const { after, afterEach, before, describe, test } = require('node:test');

const { startRelay, until } = require('./relay-kit');

const CHROMIUM = '/usr/bin/chromium';
const TIMEOUT = { timeout: 60000 };
// The page reconnects within 4 s at most (demo/app.js); five times that.
const RECONNECT_WAIT = 20000;
// The page asks /stats every 3 s; five times that.
const PEOPLE_WAIT = 15000;
const VIEWPORTS = {
  phone: { width: 390, height: 844 },
  desktop: { width: 1280, height: 800 }
};
// What Chromium logs by itself for connection attempts while the relay is
// down (or the page cut off): expected then, and only then.
const OFFLINE_NETWORK_ERROR = /WebSocket connection to .* failed|ERR_CONNECTION_REFUSED/;
const skip = fs.existsSync(CHROMIUM)
  ? false
  : `Chromium is not installed at ${CHROMIUM} (apt-get install -y chromium; .ci/run does)`;

/** A PNG of `size` x `size` pixels of one RGB colour. */
function solidPng(size, [r, g, b]) {
  const row = Buffer.alloc(1 + size * 3);
  for (let x = 0; x < size; x++) row.set([r, g, b], 1 + x * 3);
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8 bits, RGB, deflate, filter 0, no interlace
  const chunk = (type, data) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(Buffer.concat([Buffer.from(type), data])));
    return Buffer.concat([length, Buffer.from(type), data, crc]);
  };
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(Buffer.concat(Array.from({ length: size }, () => row)))),
    chunk('IEND', Buffer.alloc(0))
  ]);
}

/**
 * Decode an 8-bit RGB or RGBA PNG without interlacing (what Chromium's
 * screenshots are) into `{ width, height, pixel(x, y) }`.
 */
function decodePng(png) {
  let offset = 8;
  let width;
  let height;
  let channels;
  const data = [];
  while (offset < png.length) {
    const length = png.readUInt32BE(offset);
    const type = png.toString('latin1', offset + 4, offset + 8);
    const body = png.subarray(offset + 8, offset + 8 + length);
    if (type === 'IHDR') {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      assert.equal(body[8], 8, 'bit depth');
      assert.equal(body[12], 0, 'interlace');
      channels = { 2: 3, 6: 4 }[body[9]];
      assert.ok(channels, `colour type ${body[9]}`);
    } else if (type === 'IDAT') {
      data.push(body);
    }
    offset += 12 + length;
  }
  const raw = zlib.inflateSync(Buffer.concat(data));
  const stride = width * channels;
  const pixels = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {
      const left = i >= channels ? pixels[y * stride + i - channels] : 0;
      const up = y > 0 ? pixels[(y - 1) * stride + i] : 0;
      const upLeft = y > 0 && i >= channels ? pixels[(y - 1) * stride + i - channels] : 0;
      const predictor = [0, left, up, (left + up) >> 1, paeth(left, up, upLeft)][filter];
      pixels[y * stride + i] = (line[i] + predictor) & 0xff;
    }
  }
  const pixel = (x, y) => [...pixels.subarray(y * stride + x * channels, y * stride + x * channels + 3)];
  return { width, height, pixel };
}

function paeth(a, b, c) {
  const p = a + b - c;
  const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

describe('the demo page in headless Chromium', { skip }, () => {
  let dir;
  let browser;
  let relay;
  // Whether the relay is down on purpose: Chromium then logs failed
  // connection attempts.
  let relayDown = false;
  const pages = {};
  const consoleErrors = [];
  // Whether a test (or the setup) failed: the screenshots are kept then.
  let failed = false;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mytosis-relay-chromium-'));
    // Cleared once the setup is done: a setup that threw keeps the directory.
    failed = true;
    relay = await startRelay();
    const { chromium } = require('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync']
    });
    for (const [label, viewport] of Object.entries(VIEWPORTS)) {
      // A context each: two tabs of two people, each with its own name.
      const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
      const page = await context.newPage();
      const record = (text) => consoleErrors.push({ label, text, relayDown });
      page.on('console', (message) => message.type() === 'error' && record(message.text()));
      page.on('pageerror', (err) => record(`pageerror: ${err.message}`));
      pages[label] = page;
    }
    await Promise.all(Object.values(pages).map((page) => page.goto(`${relay.url}/`)));
    failed = false;
  });

  afterEach((t) => {
    if (t.passed) return;
    failed = true;
    t.diagnostic(`the screenshots are kept in ${dir}`);
  });

  after(async () => {
    await browser?.close();
    relay?.kill();
    if (!dir) return;
    if (failed || process.env.KEEP_SCREENSHOTS === '1') {
      const why = failed ? 'a test failed' : 'KEEP_SCREENSHOTS=1';
      console.log(`relay-chromium: screenshots kept in ${dir} (${why})`);
    } else {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  const statusOf = (page) => page.locator('#status').getAttribute('data-state');
  const bothAre = (state) => async () => (await Promise.all(Object.values(pages).map(statusOf))).every((s) => s === state);

  test('both pages come online, each with a name, and count two people here', TIMEOUT, async () => {
    await until(bothAre('online'), 'both pages online');
    const names = await Promise.all(Object.values(pages).map((page) => page.inputValue('#name')));
    assert.ok(names.every((name) => name.length > 0), `names: ${names}`);
    await until(
      async () => (await Promise.all(Object.values(pages).map((page) => page.textContent('#people')))).every((text) => text === '2 here'),
      'both pages to count two people',
      PEOPLE_WAIT
    );
  });

  test('the layout fits the phone and the desktop window', TIMEOUT, async () => {
    for (const [label, page] of Object.entries(pages)) {
      const fit = await page.evaluate(() => {
        const composer = document.getElementById('composer').getBoundingClientRect();
        return {
          overflow: document.documentElement.scrollWidth > window.innerWidth,
          composerVisible: composer.bottom <= window.innerHeight && composer.top > 0
        };
      });
      assert.deepEqual(fit, { overflow: false, composerVisible: true }, label);
    }
  });

  test('a chat line typed on one page appears on the other, as text', TIMEOUT, async () => {
    const { phone, desktop } = pages;
    await phone.fill('#name', 'Phone <i>Person</i>');
    await phone.press('#name', 'Tab');
    const text = 'Hello from the phone <b>not bold</b> & friends';
    await phone.fill('#text', text);
    await phone.press('#text', 'Enter');
    const received = desktop.locator('.entry:not(.own)[data-kind="chat"]').last();
    await received.waitFor({ timeout: 5000 });
    assert.equal(await received.locator('.text').textContent(), text);
    assert.equal(await received.locator('.who').textContent(), 'Phone <i>Person</i>');
    assert.equal(await received.locator('b, i').count(), 0, 'peer text is never markup');
    assert.equal(await phone.inputValue('#text'), '', 'the input is cleared once sent');
    assert.equal(await phone.locator('.entry.own .text').last().textContent(), text);
  });

  test('an image picked on one page, and one pasted on the other, show on the other page in their colours', TIMEOUT, async () => {
    const { phone, desktop } = pages;
    const picked = { colour: [230, 40, 200], png: solidPng(64, [230, 40, 200]) };
    const pasted = { colour: [20, 200, 120], png: solidPng(64, [20, 200, 120]) };

    await desktop.setInputFiles('#image', { name: 'magenta.png', mimeType: 'image/png', buffer: picked.png });
    await phone.evaluate((bytes) => {
      const data = new DataTransfer();
      data.items.add(new File([new Uint8Array(bytes)], 'green.png', { type: 'image/png' }));
      document.getElementById('text').dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true }));
    }, [...pasted.png]);

    for (const [page, label, image, other] of [
      [phone, 'phone', picked, desktop],
      [desktop, 'desktop', pasted, phone]
    ]) {
      const received = page.locator('.entry:not(.own)[data-kind="image"] img').last();
      await received.waitFor({ timeout: 5000 });
      await until(() => received.evaluate((img) => img.complete && img.naturalWidth === 64), `the image decoded on the ${label} page`);
      await received.scrollIntoViewIfNeeded();
      assert.match(await received.getAttribute('src'), /^blob:/);
      // The sender shows its own copy too.
      await other.locator('.entry.own[data-kind="image"] img').last().waitFor({ timeout: 5000 });

      const file = path.join(dir, `${label}.png`);
      await page.screenshot({ path: file });
      const shot = decodePng(fs.readFileSync(file));
      const box = await received.boundingBox();
      const centre = shot.pixel(Math.round(box.x + box.width / 2), Math.round(box.y + box.height / 2));
      const close = centre.every((value, i) => Math.abs(value - image.colour[i]) <= 3);
      assert.ok(close, `the ${label} screenshot shows ${centre} where the image is, not ${image.colour}`);
    }
  });

  test('the relay stopping turns both pages offline; back on the same port, online, and what was typed offline arrives', TIMEOUT, async () => {
    const { phone, desktop } = pages;
    const { port } = relay;
    relayDown = true;
    const { code } = await relay.stop('SIGTERM');
    assert.equal(code, 0);
    await until(bothAre('offline'), 'both pages offline', RECONNECT_WAIT);
    assert.equal(await phone.textContent('#people'), '–');

    // The relay keeps no history: what the phone sends on reconnecting
    // reaches the pages connected then. So the phone stays cut off until
    // the desktop is back.
    await phone.context().setOffline(true);
    const text = 'typed while the relay was down';
    await phone.fill('#text', text);
    await phone.press('#text', 'Enter');
    const pending = phone.locator('.entry.own.pending .text');
    assert.equal(await pending.last().textContent(), text);

    relay = await startRelay([], port);
    await until(async () => (await statusOf(desktop)) === 'online', 'the desktop page online again', RECONNECT_WAIT);
    await phone.context().setOffline(false);
    await until(bothAre('online'), 'both pages online again', RECONNECT_WAIT);
    relayDown = false;
    const received = desktop.locator('.entry:not(.own)[data-kind="chat"] .text').last();
    await until(async () => (await received.textContent()) === text, 'the offline message on the desktop page');
    assert.equal(await pending.count(), 0, 'nothing is pending once online');
    for (const [label, page] of Object.entries(pages)) await page.screenshot({ path: path.join(dir, `${label}-after-restart.png`) });
  });

  test('no console errors on either page (but failed connection attempts while the relay was down)', () => {
    const unexpected = consoleErrors.filter(({ text, relayDown: down }) => !(down && OFFLINE_NETWORK_ERROR.test(text)));
    assert.deepEqual(unexpected, []);
  });
});
