import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import express from 'express';
import sharp from 'sharp';
import type { Browser, Page } from 'playwright-core';
import { artifactsDir } from './browser.ts';

// Helpers for tests that drive the pages in Chromium.

/** Polls `read` until `ok` holds; fails with the last value seen. */
export async function waitUntil<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await read();
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  assert.fail(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
}

export interface MediaStats {
  /** Frames decoded per remote peer id. */
  videoFramesDecoded: Record<string, number>;
  audioPacketsReceived: number;
  /** Per consumer (SfuClient.stats): whose stream, its kind, packets and decoded frame size. */
  consumers?: Array<{ peerId: string; kind: 'audio' | 'video'; packetsReceived: number; framesDecoded: number; frameWidth: number }>;
  peers: number;
  peerId: string;
  reconnects: number;
  state: string;
}

/** What the page's SfuClient (window.sfuClient) decodes; zeros before it exists. */
export async function mediaStats(page: Page): Promise<MediaStats> {
  return page.evaluate(async () => {
    type Client = { stats(): Promise<Omit<MediaStats, 'peerId' | 'reconnects' | 'state'>>; peerId: string; reconnects: number; state: string };
    const c = (window as unknown as { sfuClient?: Client }).sfuClient;
    if (!c) return { videoFramesDecoded: {}, audioPacketsReceived: 0, peers: 0, peerId: '', reconnects: 0, state: 'none' };
    return { ...(await c.stats()), peerId: c.peerId, reconnects: c.reconnects, state: c.state };
  });
}

/** Opens a meeting link (`?autojoin=1&token=…`, with `&sfu=` for another node) in a fresh browser context: joins without sign-in. */
export async function openMeetingLink(browser: Browser, baseUrl: string, token: string, label: string, sfuUrl?: string): Promise<Page> {
  const page = await (await browser.newContext()).newPage();
  page.on('pageerror', (e) => console.error(`[page ${label}]`, e.message));
  await page.goto(`${baseUrl}/?autojoin=1&token=${encodeURIComponent(token)}${sfuUrl ? `&sfu=${encodeURIComponent(sfuUrl)}` : ''}`);
  return page;
}

/**
 * Opens the app in a fresh browser context (1366x768) and signs in through the login form.
 * `camera` ("320x240" or "320x240@15") sets the device's capture size as a person would in the page's
 * local settings: tests with many pages keep the encoders small on 2 cores.
 */
export async function signIn(browser: Browser, baseUrl: string, username: string, password: string, opts: { camera?: string } = {}): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  if (opts.camera) await context.addInitScript((size) => localStorage.setItem('camera', size), opts.camera);
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[${username}]`, e.message));
  await page.goto(baseUrl + '/');
  await page.getByLabel('用户名').fill(username);
  await page.getByLabel('密码').fill(password);
  await page.getByRole('button', { name: '登录' }).click();
  await page.getByRole('button', { name: '退出' }).waitFor();
  return page;
}

/**
 * Saves a screenshot of the page into .test-artifacts/ and fails if it is blank: a page that
 * rendered nothing (one flat colour) has almost no variation in any channel.
 */
export async function checkedScreenshot(page: Page, name: string): Promise<string> {
  const file = path.join(artifactsDir(), `${name}.png`);
  const png = await page.screenshot({ path: file });
  const { channels } = await sharp(png).stats();
  const spread = Math.max(...channels.slice(0, 3).map((c) => c.stdev));
  assert.ok(spread > 8, `screenshot ${name} looks blank (largest channel stdev ${spread.toFixed(1)})`);
  return file;
}

/**
 * Serves the built pages (web/dist) alone, for pages that join SFU nodes started without the API; it
 * publishes `sfuEndpoints` as the API would (/api/sfu-endpoints), the nodes a meeting link may name.
 */
export async function serveWebDist(sfuEndpoints: string[] = []): Promise<{ url: string; close(): void }> {
  const app = express();
  app.get('/api/sfu-endpoints', (_req, res) => void res.json({ endpoints: ['/sfu', ...sfuEndpoints] }));
  app.use(express.static(path.resolve('web/dist')));
  const server = http.createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, close: () => server.close() };
}
